"""Run-level sanity flags: a finished run whose score should not be read as learning.

A comparison puts every run's score in one table, and two failures look like ordinary numbers there: a
model that predicts one class for everything (a NER model that tags every word `O` scores entity F1 0;
an image model on 90/10 data that always says the majority class scores 0.9 accuracy), and a model
that is no better than always predicting the most frequent training class. Both are measured on the set
that scores the run, with the best model, and stored in summary.json as {"flag", "message"} records
and printed as warnings. A non-finite loss is not a flag: it stops the run with an error (`runs.epoch`).

Pure functions of predictions, labels and scores (tested on hand-made arrays); what "one class" means for a
task is the task's own `Task.degenerate`. May import: tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from tunelab.tasks.base import IGNORE

AT_CHANCE_MARGIN = 0.01
"""A run is "at chance" when its score is at most chance + this (in the metric's own units, so one point of
accuracy or F1): on 100 examples that is one example, below any difference a reader should trust."""


def majority_label(labels: Iterable) -> int:
    """The most frequent training label (the lowest index on a tie); per-token labels are counted per token.

    Labels are class indices, or lists of them for tagged sentences; IGNORE positions do not count.
    """
    flat = []
    for label in labels:
        flat.extend(label if isinstance(label, (list, tuple, np.ndarray)) else [label])
    counts = np.bincount([int(x) for x in flat if int(x) != IGNORE] or [0])
    return int(np.argmax(counts))


def constant_logits(n: int, num_classes: int, label: int) -> torch.Tensor:
    """Logits that predict `label` at each of `n` positions: what a scorer needs to score the majority baseline."""
    logits = torch.zeros(n, num_classes)
    logits[:, label] = 1.0
    return logits


def one_class_flag(degenerate: str | None, set_name: str) -> dict | None:
    """The "one-class" flag from the task's description of degenerate predictions (None: not degenerate)."""
    if degenerate is None:
        return None
    return {
        "flag": "one-class",
        "message": f"the best model {degenerate} of the {set_name} set: it does not tell the classes apart",
    }


def at_chance_flag(
    score: float, chance: float, metric: str, set_name: str, majority: str, margin: float = AT_CHANCE_MARGIN
) -> dict | None:
    """The "at-chance" flag when `score` is not above `chance` + `margin` (both measured on `set_name`).

    The bound is inclusive, with a float tolerance: 91 of 100 against a chance of 90 of 100 is flagged.
    """
    if score > chance + margin + 1e-9:
        return None
    return {
        "flag": "at-chance",
        "message": (
            f"{set_name} {metric} {score:.4f} is not above chance ({chance:.4f}, always predicting {majority!r}, "
            "the most frequent training class): no sign that the model learned the task"
        ),
    }


def run_flags(
    degenerate: str | None, score: float, chance: float, metric: str, set_name: str, majority: str
) -> list[dict]:
    """Every flag that applies, in a fixed order: one-class, at-chance."""
    flags = [one_class_flag(degenerate, set_name), at_chance_flag(score, chance, metric, set_name, majority)]
    return [f for f in flags if f is not None]


def warning_lines(flags: Sequence[dict]) -> list[str]:
    """The lines a run prints to stderr at its end, one per flag."""
    return [f"tunelab: warning: {f['flag']}: {f['message']}" for f in flags]
