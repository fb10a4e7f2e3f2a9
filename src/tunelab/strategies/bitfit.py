"""BitFit: only the bias terms of the backbone (and the new head) train (Ben Zaken et al., ACL 2022).

The smallest parameter-efficient baseline, next to adapter and LoRA: about 0.1% of a BERT's parameters
(every bias of the attention, feed-forward and LayerNorm layers) and, in a CNN, the BatchNorm shifts. A
BatchNorm layer whose bias trains keeps updating its statistics (`set_train_mode`), as when it is fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan, Strategy, freeze, group, head_group
from tunelab.strategies.registry import register_strategy

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@register_strategy
@dataclass(frozen=True)
class BitFit(Strategy):
    """Every parameter named `bias` in the blocks trains, at lr_mult x the head lr; all other weights frozen."""

    lr_mult: float = 1.0
    """Learning rate of the biases as a fraction of the head's (the paper tunes them at lrs near a head's)."""

    key = "bitfit"
    summary = "biases + head, every other weight frozen"

    def apply(self, backbone: Backbone) -> Plan:
        model = backbone.model
        biases = frozenset(n for n, _ in model.named_parameters() if n.startswith("blocks.") and n.endswith(".bias"))
        if not biases:
            raise TunelabError(
                f"bitfit: {backbone.name} has no bias terms in its blocks, so only the head would train; "
                "use none (the same thing), adapter or lora"
            )
        freeze(model)
        for name, p in model.named_parameters():
            if name in biases:
                p.requires_grad_(True)
        return Plan(self, backbone, [group(model, "biases", "blocks", self.lr_mult, only=biases), head_group(backbone)])
