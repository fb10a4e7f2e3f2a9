"""LoRA: low-rank updates (via PEFT) on the backbone's dense layers, mergeable into the weights."""

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
class LoRA(Strategy):
    """W + (alpha/r) B A on every Linear (and pointwise conv) of the blocks; B starts at zero (Hu et al., 2021)."""

    rank: int = 8
    """Rank r of the update."""
    alpha: float = 16.0
    """Scaling numerator: the update is multiplied by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the LoRA branch input."""

    key = "lora"
    positional = "rank"
    summary = "low-rank updates + head, backbone frozen; mergeable"
    edits_pretrained = True

    def apply(self, backbone: Backbone) -> Plan:
        if self.rank < 1:
            raise TunelabError(f"lora:{self.rank}: the rank must be at least 1")
        if not backbone.lora_targets:
            raise TunelabError(
                f"lora: {backbone.name} has no Linear layers or pointwise convolutions to target; use adapter or full"
            )
        from tunelab.strategies.layers import insert_lora  # lazy: the layers need torch and PEFT

        freeze(backbone.model)
        inserted = insert_lora(backbone.model, backbone.lora_targets, self.rank, self.alpha, self.dropout)
        added = inserted_params(inserted)
        for name, p in backbone.model.named_parameters():
            p.requires_grad_(name in added)  # PEFT's injection may change flags; only the LoRA matrices train
        lora = group(backbone.model, "lora", "blocks", 1.0, only=added)
        return Plan(self, backbone, [lora, head_group(backbone)], inserted)
