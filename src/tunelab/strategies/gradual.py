"""Gradual unfreezing: the head first, then the blocks from the top down, one group per stage (ULMFiT).

Howard & Ruder (2018): unfreezing all layers at once with a fresh head risks catastrophic forgetting;
unfreezing the last layer group first and one more group each epoch lets the top adapt before the general
features below it move. The blocks are split into `groups` contiguous groups counted from the top; stage 0
trains the head alone, stage s adds the s-th group, and from the last stage on everything trains. Each stage
lasts `every` epochs. The learning rates are `full`'s: lr_mult, or layer-wise `decay` (ULMFiT's
discriminative fine-tuning), each block in a group of its own so a stage can unfreeze exactly its blocks.

The phases are a pure function of the spec and --epochs (not of the model), so `compare` can mark the
switches on its learning curves from the spec alone. No block is frozen in every phase, so nothing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan, Strategy, group, head_group, unfreeze
from tunelab.strategies.recipe import Phase, check_phases_fit
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone

DEFAULT_GROUPS = 3
"""Block groups when none is given (ULMFiT's AWD-LSTM had three layers), fewer when the run is too short."""


@register_strategy
@dataclass(frozen=True)
class Gradual(Strategy):
    """Head first, then block groups from the top down, one per `every` epochs; then everything."""

    groups: int | None = None
    """Block groups unfrozen one at a time from the top; none = 3, or fewer if the run is too short for 3."""
    every: int = 1
    """Epochs per stage (ULMFiT: 1)."""
    lr_mult: float = 0.1
    """Learning rate of the pretrained blocks as a fraction of the head's (ignored when decay is set)."""
    decay: float | None = None
    """Layer-wise lr decay: block i trains at decay**(n_blocks - i) x the head lr (discriminative fine-tuning)."""

    key = "gradual"
    positional = "groups"
    summary = "head first, then blocks unfrozen from the top, one group per epoch (ULMFiT)"

    def apply(self, backbone: Backbone) -> Plan:
        n = len(backbone.blocks)
        if self.every < 1:
            raise TunelabError(f"{self.spec()}: every must be at least 1 epoch per stage, got {self.every}")
        if self.groups is not None and not 1 <= self.groups <= n:
            raise TunelabError(
                f"{self.spec()}: groups must be between 1 and {n} for {backbone.name} "
                f"(blocks: {', '.join(backbone.block_names)})"
            )
        unfreeze(backbone.model)
        model = backbone.model
        blocks = []
        for i in range(n):
            scale = self.lr_mult if self.decay is None else self.decay ** (n - i)
            blocks.append(group(model, f"block.{i}", f"blocks.{i}", scale))
        return Plan(self, backbone, [*(g for g in blocks if g.params), head_group(backbone)])

    def stages(self, epochs: int) -> int:
        """Block groups that get unfrozen in a run of `epochs` epochs (0: the run is too short for any)."""
        if self.groups is not None:
            return self.groups
        return max(0, min(DEFAULT_GROUPS, (epochs - 1) // max(self.every, 1)))

    def phase_starts(self, epochs: int) -> tuple[int, ...]:
        starts = tuple(s * self.every for s in range(self.stages(epochs) + 1))
        check_phases_fit(starts, epochs, self.spec(), f"stage {len(starts) - 1} (the bottom group)")
        return starts

    def phases(self, plan: Plan, epochs: int) -> tuple[Phase, ...]:
        starts = self.phase_starts(epochs)
        backbone = plan.backbone
        n, count = len(backbone.blocks), len(starts) - 1
        if count > n:
            raise TunelabError(f"{self.spec()}: {count} groups but {backbone.name} has only {n} blocks")
        names = {g.name for g in plan.groups}
        top_down = list(range(n - 1, -1, -1))
        sizes = [n // count + (1 if k < n % count else 0) for k in range(count)] if count else []
        phases, unfrozen = [], 0
        for stage, first in enumerate(starts):
            unfrozen += sizes[stage - 1] if stage else 0
            trainable = set(top_down[:unfrozen])
            frozen = frozenset(f"block.{i}" for i in range(n) if i not in trainable) & names
            if not trainable:
                what = "head"
            elif len(trainable) == n:
                what = "everything"
            else:
                low = backbone.block_names[min(trainable)]
                what = f"{low}..{backbone.block_names[-1]} + head" if len(trainable) > 1 else f"{low} + head"
            phases.append(Phase(first, what, frozen))
        return tuple(phases)
