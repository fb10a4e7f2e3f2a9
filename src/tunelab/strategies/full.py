"""Full-Tune: every weight trains, the pretrained ones at a smaller learning rate than the new head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.strategies.base import Plan, Strategy, batchnorm_types, block_groups, freeze, head_group, unfreeze
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

    key = "full"
    summary = "all weights, backbone at a smaller lr"

    def apply(self, backbone: Backbone) -> Plan:
        unfreeze(backbone.model)
        if self.freeze_bn:
            batchnorm = batchnorm_types()
            for module in backbone.model.modules():
                if isinstance(module, batchnorm):
                    freeze(module)
        groups = block_groups(backbone, 0, self.lr_mult, self.decay)
        return Plan(self, backbone, [*groups, head_group(backbone)])
