"""WiSE-FT: full fine-tuning, then the backbone's weights interpolated between pretrained and fine-tuned.

Wortsman et al. (CVPR 2022): w = (1 - alpha) w_pretrained + alpha w_fine-tuned keeps much of what the
pretrained model knew (robustness under distribution shift) and often scores higher than either end, at no
extra training. The mixing weight is chosen on validation from 0, 0.1, ..., 1 unless given; it applies to the
best epoch's model, which is then the run's model (model.safetensors), and is reported in summary.json and
on the run's last line. The new head has no pretrained value and is kept as fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.strategies.base import Plan, Strategy, block_group_names, head_group, pretrained_groups
from tunelab.strategies.recipe import WeightMix, check_fraction
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class WiSEFT(Strategy):
    """`full`, then w = (1 - alpha) w_pretrained + alpha w_fine-tuned for the backbone, alpha chosen on validation."""

    alpha: float | None = None
    """Mixing weight in [0, 1] (0: pretrained backbone, 1: fine-tuned); none or auto = chosen on validation."""
    lr_mult: float = 0.1
    """Backbone learning rate as a fraction of the head's (ignored when decay is set)."""
    decay: float | None = None
    """Layer-wise lr decay, as in `full`."""

    key = "wiseft"
    positional = "alpha"
    summary = "full, then pretrained and fine-tuned weights interpolated (WiSE-FT)"

    def apply(self, backbone: Backbone) -> Plan:
        check_fraction(self.alpha, self.spec(), "alpha")
        groups = pretrained_groups(backbone, self.lr_mult, self.decay)
        return Plan(self, backbone, [*groups, head_group(backbone)])

    def weight_mix(self, plan: Plan) -> WeightMix:
        return WeightMix(self.alpha, block_group_names(plan.groups))
