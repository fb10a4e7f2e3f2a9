"""Adapter: small zero-initialised bottleneck modules inserted into a frozen backbone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan, Strategy, freeze, group, head_group, inserted_params
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class Adapter(Strategy):
    """Bottleneck adapters (after attention and FFN outputs; after each CNN block) + head; backbone frozen."""

    reduction: int = 16
    """Bottleneck width = feature width / reduction (at least 1)."""

    key = "adapter"
    positional = "reduction"
    summary = "bottleneck adapters + head, backbone frozen"

    def apply(self, backbone: Backbone) -> Plan:
        if self.reduction < 1:
            raise TunelabError(f"adapter:{self.reduction}: the reduction factor must be at least 1")
        from tunelab.strategies.layers import insert_adapters  # lazy: the layers need torch

        freeze(backbone.model)
        inserted = insert_adapters(backbone.model, backbone.adapter_sites, self.reduction)
        added = inserted_params(inserted)
        adapters = group(backbone.model, "adapters", "blocks", 1.0, only=added)
        return Plan(self, backbone, [adapters, head_group(backbone)], inserted)
