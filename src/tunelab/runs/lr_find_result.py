"""What an lr range test produced: the recorded curve, its two readings, the result and its files.

`runs.lr_find` runs the sweep and hands its `Curve` to `save_result`, which reads it (`read_curve`) and writes
lr_find.csv, lr_find.png and lr_find.json. Kept apart from the sweep because none of it trains: the readings
are pure functions of the curve, tested on made-up curves, and the result is what the CLI and the Python API
return. The module docstring of `runs.lr_find` says why the suggestion is minimum / 10.

May import: fileio, settings, runs.lr_find_plot, numpy; the Job type only for annotations.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tunelab.fileio import atomic_write_bytes, atomic_write_text, save_json
from tunelab.runs.lr_find_plot import plot_png
from tunelab.settings import LrFindConfig

if TYPE_CHECKING:
    from tunelab.runs.job import Job

SUGGESTED_BY = "minimum / 10"
"""The rule the suggestion follows (`runs.lr_find` says why not the steepest point)."""
CAVEAT = "a starting point, not an answer: check it with a short run before a long one"
"""What every user of an lr range test learns: the curve comes from one short sweep at a changing lr."""


@dataclass(frozen=True)
class LrFindFiles:
    """What the sweep wrote into its out folder."""

    plot: Path
    """lr_find.png: the loss against the head lr (log scale), the suggestions marked."""
    table: Path
    """lr_find.csv: step, lr, loss, smoothed per recorded step."""
    summary: Path
    """lr_find.json: the settings of the sweep, the suggestions and every recorded step."""


@dataclass(frozen=True)
class LrFindResult:
    """One lr range test: the curve, its two readings, the suggestion and where it was saved."""

    lrs: tuple[float, ...]
    """Head (base) learning rate of each recorded step; it grows geometrically from start_lr."""
    losses: tuple[float, ...]
    """Training loss of each recorded step's batch (before that step's update)."""
    smoothed: tuple[float, ...]
    """Exponential moving average of the losses (weight SMOOTHING), bias-corrected."""
    group_lrs: Mapping[str, tuple[float, ...]]
    """Learning rate of each optimizer parameter group at each recorded step, as the optimizer held it."""
    minimum_lr: float
    """Head lr of the lowest smoothed loss (the first tenth of the steps left out: see `read_curve`)."""
    steepest_lr: float | None
    """Head lr where the smoothed loss fell fastest (before its minimum); None when the loss never fell."""
    suggested_lr: float
    """The suggested head lr (`--lr` of train): minimum_lr / 10."""
    stopped: str
    """Why the sweep ended: it reached end_lr, or how it diverged."""
    files: LrFindFiles
    """The plot, the table and the summary in the out folder."""
    seconds: float
    """Wall time of the test, loading the data and the model included."""

    @property
    def minimum_rule_lr(self) -> float:
        """One decade below the minimum: the rule the suggestion follows."""
        return self.minimum_lr / 10

    def report(self) -> list[str]:
        """The lines a person reads: both readings, which one is suggested and why to check it."""
        steepest = "none (the smoothed loss never fell)" if self.steepest_lr is None else f"{self.steepest_lr:.2g}"
        lines = [
            f"lr-find: {len(self.lrs)} steps, head lr {self.lrs[0]:.2g} to {self.lrs[-1]:.2g}; {self.stopped} "
            f"({self.seconds:.0f} s)",
            f"  steepest descent of the smoothed loss: lr {steepest}",
            f"  minimum / 10: lr {self.minimum_rule_lr:.2g} (smoothed loss lowest at lr {self.minimum_lr:.2g})",
            f"suggested: {SUGGESTED_BY}, --lr {self.suggested_lr:.2g}; {CAVEAT}",
        ]
        if self.steepest_lr is None:
            lines.append("the smoothed loss did not fall over the range: lower --start-lr, or train more --steps")
        lines.append(f"plot: {self.files.plot}; table: {self.files.table}")
        return lines


@dataclass(frozen=True)
class Curve:
    """What the sweep recorded, step by step, and why it stopped."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    group_lrs: dict[str, list[float]]
    stopped: str


@dataclass(frozen=True)
class Readings:
    """What the curve says: where its smoothed loss is lowest and where it falls fastest."""

    minimum_lr: float
    """Head lr of the lowest smoothed loss."""
    steepest_lr: float | None
    """Head lr of the steepest fall of the smoothed loss before its minimum; None when it never fell."""


def read_curve(lrs: Sequence[float], smoothed: Sequence[float], skip: int) -> Readings:
    """Both readings of the curve, leaving out its first `skip` steps (fastai leaves out the first tenth).

    The average of the first few steps rests on a handful of batches, so its wiggles on the flat start
    would otherwise pass for the steepest descent. The steepest point is looked for up to the minimum: it
    is the fall that matters, and past the minimum the loss only rises. Slopes are per unit of log lr.
    """
    skip = min(skip, len(lrs) - 1)
    lrs, smoothed = np.asarray(lrs[skip:]), np.asarray(smoothed[skip:])
    end = int(np.argmin(smoothed)) + 1
    steepest = None
    if end >= 3:
        slopes = np.gradient(smoothed[:end], np.log10(lrs[:end]))
        steepest = float(lrs[int(np.argmin(slopes))]) if slopes.min() < 0 else None
    return Readings(float(lrs[end - 1]), steepest)


def save_result(config: LrFindConfig, job: Job, curve: Curve, out: Path, seconds: float) -> LrFindResult:
    """Read `curve`, write lr_find.csv, .png and .json into `out` (atomically), return the result."""
    readings = read_curve(curve.lrs, curve.smoothed, config.steps // 10)
    files = LrFindFiles(out / "lr_find.png", out / "lr_find.csv", out / "lr_find.json")
    result = LrFindResult(
        lrs=tuple(curve.lrs),
        losses=tuple(curve.losses),
        smoothed=tuple(curve.smoothed),
        group_lrs={name: tuple(values) for name, values in curve.group_lrs.items()},
        minimum_lr=readings.minimum_lr,
        steepest_lr=readings.steepest_lr,
        suggested_lr=readings.minimum_lr / 10,
        stopped=curve.stopped,
        files=files,
        seconds=seconds,
    )
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["step", "lr", "loss", "smoothed"])
    writer.writerows(
        (i + 1, repr(lr), repr(loss), repr(s))
        for i, (lr, loss, s) in enumerate(zip(curve.lrs, curve.losses, curve.smoothed))
    )
    atomic_write_text(files.table, table.getvalue())
    title = f"lr range test: {job.config.model} + {job.plan.strategy.spec()}"
    atomic_write_bytes(files.plot, plot_png(result, title, SUGGESTED_BY))
    save_json(files.summary, _summary(config, job, result))
    return result


def _summary(config: LrFindConfig, job: Job, result: LrFindResult) -> dict:
    return {
        "model": job.config.model,
        "strategy": job.plan.strategy.spec(),
        "task": job.config.task,
        "train_examples": len(job.splits.train),
        "batch_size": job.config.batch_size,
        "optimizer": job.config.optimizer,
        "start_lr": config.start_lr,
        "end_lr": config.end_lr,
        "steps": config.steps,
        "steps_done": len(result.lrs),
        "seconds": result.seconds,
        "stopped": result.stopped,
        "group_scales": {name: lrs[0] / result.lrs[0] for name, lrs in result.group_lrs.items()},
        "minimum_lr": result.minimum_lr,
        "steepest_lr": result.steepest_lr,
        "minimum_rule_lr": result.minimum_rule_lr,
        "suggested_lr": result.suggested_lr,
        "suggested_by": SUGGESTED_BY,
        "caveat": CAVEAT,
        "points": [
            {"lr": lr, "loss": loss, "smoothed": s} for lr, loss, s in zip(result.lrs, result.losses, result.smoothed)
        ],
    }
