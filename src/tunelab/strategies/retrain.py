"""Re-Train: the first K blocks (from the input) stay frozen, the rest and the head train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan, Strategy, block_groups, freeze, head_group, unfreeze
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class ReTrain(Strategy):
    """Blocks 0..K-1 frozen (generic low-level features kept), blocks K.. and the head trained."""

    k: int | None = None
    """Number of leading blocks to freeze; default: half of them."""
    lr_mult: float = 0.1
    """Learning rate of the trained pretrained blocks as a fraction of the head's."""
    decay: float | None = None
    """Layer-wise lr decay over the trained blocks, as in `full`."""

    key = "retrain"
    positional = "k"
    summary = "first K blocks frozen, the rest trained"

    def frozen_blocks(self, backbone: Backbone) -> int:
        n = len(backbone.blocks)
        k = n // 2 if self.k is None else self.k
        if not 0 <= k <= n:
            raise TunelabError(
                f"retrain:{k}: K must be between 0 and {n} for {backbone.name} "
                f"(blocks: {', '.join(backbone.block_names)})"
            )
        return k

    def apply(self, backbone: Backbone) -> Plan:
        k = self.frozen_blocks(backbone)
        unfreeze(backbone.model)
        for block in backbone.blocks[:k]:
            freeze(block)
        groups = block_groups(backbone, k, self.lr_mult, self.decay)
        return Plan(self, backbone, [*groups, head_group(backbone)])
