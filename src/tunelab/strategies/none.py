"""None-Tune (linear probe): the backbone is a fixed feature extractor, only the new head trains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.strategies.base import Plan, Strategy, freeze, head_group
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class NoneTune(Strategy):
    """Backbone frozen (BatchNorm in eval mode), new head trained. Cheapest; best when data is small and similar."""

    key = "none"
    summary = "backbone frozen, new head only (linear probe)"

    def apply(self, backbone: Backbone) -> Plan:
        freeze(backbone.model)
        return Plan(self, backbone, [head_group(backbone)])
