"""BERT-family encoders (BERT, RoBERTa, XLM-R) in the contract's shape: embeddings, then one block per layer.

Between blocks the state is a `TokenState` (hidden states plus the 2-D padding mask), so any block
boundary can be cached. Each layer block builds the 4-D attention mask with transformers' own
`create_bidirectional_mask`, the same call `BertModel.forward` makes, so the split model computes what
the library computes.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch import nn
from transformers import BertModel, PreTrainedModel, RobertaModel, XLMRobertaModel
from transformers.masking_utils import create_bidirectional_mask

from tunelab.errors import TunelabError
from tunelab.models.inputs import TextInput
from tunelab.models.contract import AdapterSite, Backbone, TransferModel

SUPPORTED = (BertModel, RobertaModel, XLMRobertaModel)


class TokenState(NamedTuple):
    """What flows between text blocks."""

    hidden: torch.Tensor
    """(batch, tokens, hidden) activations."""
    mask: torch.Tensor
    """(batch, tokens) 1 for real tokens, 0 for padding."""
    entity_starts: torch.Tensor | None = None
    """(batch, 2) positions of the head and tail entity markers (relation classification), else None."""


class Embeddings(nn.Module):
    """Block 0: token, position and segment embeddings of a tokenizer batch."""

    def __init__(self, embeddings: nn.Module):
        super().__init__()
        self.embeddings = embeddings

    def forward(self, batch: dict[str, torch.Tensor]) -> TokenState:
        hidden = self.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
        return TokenState(hidden, batch["attention_mask"], batch.get("entity_starts"))


class EncoderLayer(nn.Module):
    """Blocks 1..n: one transformer layer."""

    def __init__(self, layer: nn.Module, config):
        super().__init__()
        self.layer = layer
        self.config = config

    def forward(self, state: TokenState) -> TokenState:
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=state.hidden, attention_mask=state.mask)
        hidden = self.layer(state.hidden, attention_mask=mask)
        return state._replace(hidden=hidden)


def masked_mean(state: TokenState) -> torch.Tensor:
    """Average of the token vectors, ignoring padding (the pooling sentence-transformers trains with)."""
    mask = state.mask.unsqueeze(-1).to(state.hidden.dtype)
    return (state.hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MeanPool(nn.Module):
    """`masked_mean` as a module, the first layer of the text heads."""

    def forward(self, state: TokenState) -> torch.Tensor:
        return masked_mean(state)


def text_classifier_head(num_features: int, num_outputs: int, dropout: float = 0.1) -> nn.Sequential:
    """Mean pooling, dropout, linear. With num_outputs == 0 the head returns the pooled sentence embedding."""
    if num_outputs == 0:
        return nn.Sequential(MeanPool())
    linear = nn.Linear(num_features, num_outputs)
    nn.init.normal_(linear.weight, std=0.02)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(MeanPool(), nn.Dropout(dropout), linear)


def from_transformers(net: PreTrainedModel, tokenizer, name: str, pretrained: bool = True) -> Backbone:
    """Wrap a BERT-family encoder; its head starts as mean pooling (a sentence embedding)."""
    if not isinstance(net, SUPPORTED):
        supported = ", ".join(cls.__name__ for cls in SUPPORTED)
        raise TunelabError(f"transformers architecture {type(net).__name__} is not supported; supported: {supported}")
    config = net.config
    layers = [EncoderLayer(layer, config) for layer in net.encoder.layer]
    dropout = float(config.hidden_dropout_prob)
    model = TransferModel([Embeddings(net.embeddings), *layers], text_classifier_head(config.hidden_size, 0))
    sites = []
    targets = []
    for i in range(1, len(layers) + 1):
        sites.append(AdapterSite(i, f"blocks.{i}.layer.attention.output.dense", config.hidden_size, "linear"))
        sites.append(AdapterSite(i, f"blocks.{i}.layer.output.dense", config.hidden_size, "linear"))
        targets += [n for n, m in model.blocks[i].named_modules(prefix=f"blocks.{i}") if isinstance(m, nn.Linear)]
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), config.max_position_embeddings, 128)
    return Backbone(
        name=name,
        family="transformers",
        model=model,
        block_names=["embeddings", *(f"layer.{i}" for i in range(len(layers)))],
        num_features=config.hidden_size,
        input=TextInput(tokenizer=tokenizer, max_length=max_length),
        make_head=partial(text_classifier_head, dropout=dropout),
        adapter_sites=sites,
        lora_targets=targets,
        num_outputs=0,
        pretrained=pretrained,
        word_embeddings=net.embeddings.word_embeddings,
        lookup_blocks=1,
    )
