"""LP-FT: a linear probe first, then full fine-tuning from that head (Kumar et al., ICLR 2022).

Fine-tuning with a randomly initialised head sends large, random gradients into the pretrained features
in the first steps and distorts them; starting from a head already fitted to the frozen features avoids
that (the paper: about +1% in distribution, +10% out of distribution over full fine-tuning).

The probe is a prologue: before epoch 1 the head alone trains for `probe_epochs` passes over the frozen
backbone's features, computed once in eval mode (so the probe costs one forward pass, not epochs of a
backbone); the run's --epochs are then full fine-tuning, as `full` would do them, from the probed head. A
resumed run finds the probed head in its checkpoint and does not probe again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan, Strategy, head_group, pretrained_groups
from tunelab.strategies.recipe import Probe
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class LPFT(Strategy):
    """Probe the head on frozen features, then fine-tune everything as `full` does, starting from that head."""

    probe_epochs: int = 10
    """Passes of the linear probe over the frozen features, before the run's epochs (they cost a head each)."""
    probe_lr: float = 1.0
    """The probe's learning rate as a multiple of the head's (--lr)."""
    lr_mult: float = 0.1
    """Backbone learning rate during fine-tuning, as a fraction of the head's (ignored when decay is set)."""
    decay: float | None = None
    """Layer-wise lr decay during fine-tuning, as in `full`."""

    key = "lpft"
    positional = "probe_epochs"
    summary = "linear probe on frozen features, then everything from that head (LP-FT)"

    def apply(self, backbone: Backbone) -> Plan:
        if self.probe_epochs < 1:
            raise TunelabError(f"{self.spec()}: probe_epochs must be at least 1 (without a probe it is `full`)")
        if self.probe_lr <= 0:
            raise TunelabError(f"{self.spec()}: probe_lr must be more than 0, got {self.probe_lr:g}")
        groups = pretrained_groups(backbone, self.lr_mult, self.decay)
        return Plan(self, backbone, [*groups, head_group(backbone)])

    def probe(self) -> Probe:
        return Probe(self.probe_epochs, self.probe_lr)
