"""`advise(model, data, ...)`: measure, then decide. The library entry point behind `tunelab advise`.

May import: tunelab.advice.decide, tunelab.advice.measure, tunelab.settings.
"""

from __future__ import annotations

from tunelab.advice.decide import Advice, Budget, Thresholds, decide
from tunelab.advice.measure import measure
from tunelab.settings import AdviseConfig


def advise(
    model: str,
    data: str,
    val_data: str | None = None,
    task: str = AdviseConfig.task,
    max_examples: int = AdviseConfig.max_examples,
    budget_params: int | None = None,
    budget_memory_mb: float | None = None,
    thresholds: Thresholds | None = None,
    seed: int = AdviseConfig.seed,
    *,
    control_examples: int = AdviseConfig.control_examples,
    batch_size: int = AdviseConfig.batch_size,
    max_length: int | None = None,
    text_column: str | None = None,
    label_column: str = AdviseConfig.label_column,
    image_size: int | None = None,
    progress: bool = True,
) -> Advice:
    """Measure `model` on `data` and recommend a strategy (the rule: `tunelab.advice.decide`).

    The profile counts the data to be trained on (with `val_data`, the training data only); features
    are computed on train and validation pooled: the pretrained model's on a stratified sample of at
    most `max_examples`, the random-init control's on a stratified `control_examples` of it (every
    pretrained-vs-random number compares the two on those same examples).
    Cost: a pretrained forward pass over the sample and a control one over its part. The budget is checked before
    anything is measured, so a wrong value fails in a second. `thresholds` None means the defaults.
    """
    budget = Budget(budget_params, budget_memory_mb)
    thresholds = Thresholds() if thresholds is None else thresholds
    measurements = measure(
        model,
        data,
        val_data,
        task,
        max_examples,
        seed,
        control_examples=control_examples,
        batch_size=batch_size,
        max_length=max_length,
        text_column=text_column,
        label_column=label_column,
        image_size=image_size,
        size_candidates=budget.params is not None or budget.memory_mb is not None,
        progress=progress,
    )
    return decide(measurements, thresholds, budget)
