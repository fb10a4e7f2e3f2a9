"""BERT-family encoders (BERT, RoBERTa, XLM-R) in the contract's shape: embeddings, then one block per layer.

Between blocks the state is a `TokenState` (hidden states plus the 2-D padding mask), so any block
boundary can be cached. Each layer block builds the 4-D attention mask with transformers' own
`create_bidirectional_mask`, the same call `BertModel.forward` makes, so the split model computes what
the library computes.

transformers is imported where it is used (it is loaded by then, to build the model), so importing this
file costs torch only: an image run never loads transformers.

May import: errors, models.contract, models.inputs (and torch, transformers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from tunelab.errors import TunelabError
from tunelab.models.contract import AdapterSite, Backbone, TokenState, TransferModel, masked_mean
from tunelab.models.inputs import TextInput

if TYPE_CHECKING:
    from transformers import PreTrainedModel

FAMILY = "transformers"
"""This family's name in `Backbone.family` and `tunelab models`."""


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while we load (we print our own summary)."""
    from transformers.utils import logging  # lazy: see the module docstring

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()


class EmbeddingBlock(nn.Module):
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
        from transformers.masking_utils import create_bidirectional_mask  # lazy: see the module docstring

        super().__init__()
        self.layer = layer
        self.config = config
        self.make_mask = create_bidirectional_mask  # the library's own 4-D mask, as in `BertModel.forward`

    def forward(self, state: TokenState) -> TokenState:
        mask = self.make_mask(config=self.config, inputs_embeds=state.hidden, attention_mask=state.mask)
        hidden = self.layer(state.hidden, attention_mask=mask)
        return state._replace(hidden=hidden)


class MeanPool(nn.Module):
    """`masked_mean` as a module, the first layer of the text heads."""

    def forward(self, state: TokenState) -> torch.Tensor:
        return masked_mean(state)


def text_classifier_head(num_features: int, num_outputs: int, dropout: float = 0.1) -> nn.Sequential:
    """Mean pooling, dropout, linear. With num_outputs == 0 the head returns the pooled sentence embedding."""
    if num_outputs == 0:
        head = nn.Sequential(MeanPool())
    else:
        linear = nn.Linear(num_features, num_outputs)
        nn.init.normal_(linear.weight, std=0.02)
        nn.init.zeros_(linear.bias)
        head = nn.Sequential(MeanPool(), nn.Dropout(dropout), linear)
    head.pool_layers = 1  # see contract.head_pool
    return head


def from_transformers(net: PreTrainedModel, tokenizer, name: str, pretrained: bool = True) -> Backbone:
    """Wrap a BERT-family encoder; its head starts as mean pooling (a sentence embedding)."""
    from transformers import BertModel, RobertaModel, XLMRobertaModel  # lazy: see the module docstring

    supported = (BertModel, RobertaModel, XLMRobertaModel)  # encoders whose layout the blocks below know
    if not isinstance(net, supported):
        names = ", ".join(cls.__name__ for cls in supported)
        raise TunelabError(f"transformers architecture {type(net).__name__} is not supported; supported: {names}")
    config = net.config
    layers = [EncoderLayer(layer, config) for layer in net.encoder.layer]
    dropout = float(config.hidden_dropout_prob)
    model = TransferModel([EmbeddingBlock(net.embeddings), *layers], text_classifier_head(config.hidden_size, 0))
    sites = []
    targets = []
    for i in range(1, len(layers) + 1):
        sites.append(AdapterSite(i, f"blocks.{i}.layer.attention.output.dense", config.hidden_size, "linear"))
        sites.append(AdapterSite(i, f"blocks.{i}.layer.output.dense", config.hidden_size, "linear"))
        targets += [n for n, m in model.blocks[i].named_modules(prefix=f"blocks.{i}") if isinstance(m, nn.Linear)]
    max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), config.max_position_embeddings, 128)
    # RoBERTa and XLM-R number positions from padding_idx + 1, so two of their 514 embeddings are never used.
    offset = int(config.pad_token_id or 0) + 1 if isinstance(net, (RobertaModel, XLMRobertaModel)) else 0
    max_positions = config.max_position_embeddings - offset
    return Backbone(
        name=name,
        family=FAMILY,
        model=model,
        block_names=["embeddings", *(f"layer.{i}" for i in range(len(layers)))],
        num_features=config.hidden_size,
        input=TextInput(tokenizer=tokenizer, max_length=min(max_length, max_positions), max_positions=max_positions),
        make_head=partial(text_classifier_head, dropout=dropout),
        adapter_sites=sites,
        lora_targets=targets,
        num_outputs=0,
        pretrained=pretrained,
        word_embeddings=net.embeddings.word_embeddings,
        attention_dropouts=[layer.attention.self.dropout for layer in net.encoder.layer],
        attention_dropout=float(config.attention_probs_dropout_prob),
        lookup_blocks=1,
    )
