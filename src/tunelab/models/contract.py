"""The backbone contract: any supported network as an ordered list of blocks followed by a head.

Every family (torchvision, timm, transformers) is rebuilt into a `TransferModel`, whose forward pass is
just "run the blocks in order, then the head". That one shape is what makes the strategies generic:
"freeze the first K blocks" means the same thing for a CNN (stem, stages, neck) as for a BERT
(embeddings, layers), and a frozen prefix can be run once and cached because `forward` can start at
any block. The family adapters only decide where the block boundaries are, where adapters go and which
layers LoRA targets; they share parameters with the library's own modules, so pretrained weights load
the usual way.

Text blocks pass a `TokenState` (hidden states plus the padding mask) from one to the next; it lives here,
not in the transformers family, because tasks, the feature cache and the feature extractor read it too.

May import: models.inputs (and torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import nn

from tunelab.models.inputs import ImageInput, TextInput


class TokenState(NamedTuple):
    """What flows between text blocks."""

    hidden: torch.Tensor
    """(batch, tokens, hidden) activations."""
    mask: torch.Tensor
    """(batch, tokens) 1 for real tokens, 0 for padding."""
    entity_starts: torch.Tensor | None = None
    """(batch, 2) positions of the head and tail entity markers (relation classification), else None."""


def masked_mean(state: TokenState) -> torch.Tensor:
    """Average of the token vectors, ignoring padding (the pooling sentence-transformers trains with)."""
    mask = state.mask.unsqueeze(-1).to(state.hidden.dtype)
    return (state.hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TransferModel(nn.Module):
    """Blocks run in order, then the head: `head(blocks[n-1](...blocks[0](x)))`."""

    def __init__(self, blocks: list[nn.Module], head: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x, start: int = 0, stop: int | None = None):
        """Run blocks[start:stop]; the head runs only when the pass reaches the end (stop is None).

        `start`/`stop` let a trainer cache the output of a frozen prefix and train only what follows.
        """
        for block in self.blocks[start:stop]:
            x = block(x)
        return self.head(x) if stop is None else x


@dataclass(frozen=True)
class AdapterSite:
    """A place where the adapter strategy inserts a bottleneck module after an existing one."""

    block: int
    """Index of the block the site belongs to."""
    path: str
    """Dotted name, inside the TransferModel, of the module whose output the adapter transforms."""
    width: int
    """Channels (CNN) or hidden size (transformer) of that output."""
    kind: Literal["conv", "linear"]
    """'conv' for NCHW feature maps (1x1-conv adapter), 'linear' for (..., width) features."""


@dataclass
class Backbone:
    """A pretrained (or random) network in the contract's shape, with what it needs as input."""

    name: str
    """Zoo name or source it was loaded from, e.g. 'mobilenet_v2', 'timm:resnet18', 'hf:bert-base-uncased'."""
    family: str
    """Library the architecture comes from, as the family adapter names itself ('torchvision', 'timm', ...)."""
    model: TransferModel
    """The network: ordered blocks (input first) and the head."""
    block_names: list[str]
    """A readable name per block, e.g. 'stem', 'stage3', 'layer.5'."""
    num_features: int
    """Width of the features the head receives (channels after pooling, or hidden size)."""
    input: ImageInput | TextInput
    """Preprocessing the network expects."""
    make_head: Callable[[int, int], nn.Module] = field(repr=False)
    """Builds a freshly initialised head: make_head(num_features, num_outputs)."""
    adapter_sites: list[AdapterSite] = field(default_factory=list, repr=False)
    """Where bottleneck adapters go (after each CNN block; after attention and FFN outputs of a layer)."""
    lora_targets: list[str] = field(default_factory=list, repr=False)
    """Dotted names of the layers LoRA adapts (Linear layers, and pointwise convs for CNNs)."""
    num_outputs: int = 0
    """Outputs of the current head (classes)."""
    pretrained: bool = True
    """False when built with random weights (the scratch baseline, tests)."""
    word_embeddings: nn.Embedding | None = field(default=None, repr=False)
    """Text backbones: the token embedding table (adversarial training perturbs it; entity markers extend it)."""
    attention_dropouts: list[nn.Dropout] = field(default_factory=list, repr=False)
    """Text backbones: the dropout on each layer's attention weights, which a run sets (--attention-dropout)."""
    attention_dropout: float | None = None
    """The checkpoint's own attention dropout, as loaded (runs used it before --attention-dropout existed)."""
    lookup_blocks: int = 0
    """Leading blocks that are table lookups (a text model's embeddings: 1). Recomputing them costs less than
    storing their output, so a frozen prefix of only these blocks is not worth caching: measured on MiniLM
    LoRA/adapter with 1000+400 SST-2 sentences, caching the embeddings took 50-70 MB more memory than
    Hugging Face `Trainer` and saved no time."""

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.blocks

    @property
    def head(self) -> nn.Module:
        return self.model.head

    @property
    def modality(self) -> Literal["image", "text"]:
        return "image" if isinstance(self.input, ImageInput) else "text"

    def replace_head(self, num_outputs: int) -> nn.Module:
        """Swap in a freshly initialised head sized for the target classes and return it."""
        self.model.head = self.make_head(self.num_features, num_outputs)
        self.num_outputs = num_outputs
        return self.model.head


def classifier_head(num_features: int, num_outputs: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pool, dropout, linear: the usual CNN classification head.

    Kept as a Sequential with the Linear last so a pretrained classifier can be copied in by position.
    """
    linear = nn.Linear(num_features, num_outputs)
    nn.init.normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), linear)
    head.pool_layers = 2  # see head_pool
    return head


def head_pool(head: nn.Module) -> nn.Sequential | None:
    """The head's leading pool, or None: its first `pool_layers` modules, which hold no parameters and reduce
    the last block's output to one vector per example (global average pooling, masked mean over tokens).

    A head that a family's `make_head` builds declares `pool_layers`; a task's own head (a tag per token,
    entity-marker states) declares none and has no pool. Fed back as a 1x1 feature map or a one-token
    sentence, a pooled vector pools to itself, so when every block is frozen the feature cache stores the
    pooled vector instead of every position (`runs.feature_cache`): a MobileNetV2 image then takes 1280
    floats instead of 1280x7x7, and a sentence one row instead of one per token.
    """
    count = getattr(head, "pool_layers", 0)
    if not count:
        return None
    pool = nn.Sequential(*list(head)[:count])
    if any(True for _ in pool.parameters()):
        raise ValueError(f"a head's pool must hold no parameters: {pool}")
    return pool
