"""Scratch: the same architecture with random weights, all trained: the baseline that shows what transfer bought."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan, Strategy, group, head_group, unfreeze
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class Scratch(Strategy):
    """Random initialisation, every weight at the full learning rate."""

    key = "scratch"
    pretrained = False
    summary = "random init, everything trained (baseline)"

    def apply(self, backbone: Backbone) -> Plan:
        if backbone.pretrained:
            raise TunelabError("scratch needs a randomly initialised backbone: load it with pretrained=False")
        unfreeze(backbone.model)
        return Plan(self, backbone, [group(backbone.model, "backbone", "blocks", 1.0), head_group(backbone)])
