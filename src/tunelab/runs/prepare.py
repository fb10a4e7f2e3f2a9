"""Prepare a model for transfer: load it, shape it for the task, apply the strategy -> the Plan a trainer needs.

The one place where models, tasks and strategies meet before training; how a Plan is shown (`tunelab
inspect`) is `strategies.describe`.

May import: errors, models, strategies, tasks.
"""

from __future__ import annotations

from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.models.zoo import load_backbone
from tunelab.strategies import Plan, Strategy, parse_strategy
from tunelab.tasks import check_modality, get_task


def prepare(
    model: str, strategy: str | Strategy, num_classes: int, trust_remote_code: bool = False, task: str | None = None
) -> Plan:
    """Load `model`, give it a fresh head for `num_classes`, apply `strategy`: everything a trainer needs.

    The backbone is loaded with random weights when the strategy says so (scratch), so the baseline is the
    same architecture trained from nothing. `trust_remote_code` is passed to Hugging Face loading (see zoo).
    A `task` other than plain classification shapes the head and the inputs before the strategy runs and
    adds what it always trains after (see `tasks.base.Task`).
    """
    if num_classes < 2:
        raise TunelabError(f"--num-classes must be at least 2, got {num_classes}")
    strategy = parse_strategy(strategy) if isinstance(strategy, str) else strategy
    backbone = load_backbone(model, pretrained=strategy.pretrained, trust_remote_code=trust_remote_code)
    return shape(backbone, strategy, num_classes, task)


def shape(backbone: Backbone, strategy: str | Strategy, num_classes: int, task: str | None = None) -> Plan:
    """`prepare` on a backbone already loaded (changed in place: pass a copy to keep the original)."""
    strategy = parse_strategy(strategy) if isinstance(strategy, str) else strategy
    if task is None:
        backbone.replace_head(num_classes)
        return strategy.apply(backbone)
    check_modality(task, backbone)
    kind = get_task(task)
    kind.adapt(backbone, num_classes)
    return kind.finish(strategy.apply(backbone))
