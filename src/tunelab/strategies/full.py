"""Full-Tune: every weight trains, the pretrained ones at a smaller learning rate than the new head.

Two options change what "every weight" means for a text model and where the weights are pulled:
`freeze_embeddings` keeps the word-embedding table fixed (about half of MiniLM's parameters: less optimizer
state and a faster step), and `l2sp=ALPHA` pulls the pretrained weights toward where they started instead of
toward zero (L2-SP, Li et al., ICML 2018: alpha/2 * ||w - w0||^2 in the loss; the pretrained groups then get
no weight decay, the new head keeps --weight-decay, as the paper keeps plain L2 on the new layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import (
    Plan,
    Strategy,
    block_group_names,
    block_groups,
    freeze,
    freeze_batchnorm,
    head_group,
    unfreeze,
)
from tunelab.strategies.recipe import Anchor
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class FullTune(Strategy):
    """All weights train; backbone lr = head lr x lr_mult, or layer-wise decay when `decay` is set."""

    lr_mult: float = 0.1
    """Backbone learning rate as a fraction of the head's (ignored when decay is set)."""
    decay: float | None = None
    """Layer-wise lr decay: block i trains at decay**(n_blocks - i) x the head lr."""
    freeze_bn: bool = False
    """Keep BatchNorm affine parameters and running statistics fixed (useful with small batches)."""
    freeze_embeddings: bool = False
    """Text models: keep the word-embedding table fixed (position embeddings and their LayerNorm still train)."""
    l2sp: float | None = None
    """L2-SP: pull the pretrained weights toward their start with alpha/2 ||w - w0||^2 instead of weight decay."""

    key = "full"
    summary = "all weights, backbone at a smaller lr"

    def apply(self, backbone: Backbone) -> Plan:
        if self.l2sp is not None and self.l2sp < 0:
            raise TunelabError(f"{self.spec()}: l2sp must be 0 or more (the strength of the pull), got {self.l2sp:g}")
        if self.freeze_embeddings and backbone.word_embeddings is None:
            raise TunelabError(
                f"{self.spec()}: {backbone.name} has no word embeddings to freeze ({backbone.modality} model); "
                "drop freeze_embeddings"
            )
        unfreeze(backbone.model)
        if self.freeze_bn:
            freeze_batchnorm(backbone.model)
        if self.freeze_embeddings:
            freeze(backbone.word_embeddings)
        groups = block_groups(backbone, 0, self.lr_mult, self.decay)
        return Plan(self, backbone, [*groups, head_group(backbone)])

    def anchor(self, plan: Plan) -> Anchor | None:
        return None if self.l2sp is None else Anchor(self.l2sp, block_group_names(plan.groups))
