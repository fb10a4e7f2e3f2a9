"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's `lr_find`): `lr_find(config)`.

Train the run a `tunelab train` with the same settings would train (same data split, model, strategy,
optimiser, batch, feature cache) for a fixed number of optimizer steps while the head's learning rate grows
geometrically from start_lr to end_lr, every parameter group keeping its strategy's lr scale (full: the
backbone at 0.1x). Record the training loss of every step and its exponential moving average (bias-corrected
like Adam's moments, so the first steps are not pulled towards zero); stop once the smoothed loss exceeds 4x
the best seen, where training has clearly diverged and every further step only costs time.

Two readings of the curve, both printed (the first tenth of the steps left out, as fastai does: its
average rests on a handful of batches):
- steepest descent: the lr where the smoothed loss falls fastest per decade of lr;
- minimum / 10: one decade below the lr of the lowest smoothed loss (the fastai course rule).
The suggestion is minimum / 10. The steepest point sits on a slope the smoothing bends and a few noisy
batches move, so it jumps between repeats; the minimum is a broad, stable feature of the curve, and a
decade below it is still on the falling part: fast, but clear of the divergence that follows the minimum.
Either is a starting point, not an answer: the curve is measured over a few hundred examples at a changing
lr, so check the suggestion with a short run.

Nothing is written into any run or model folder: the model is loaded as for training and the trained
weights are dropped; the sweep writes only its own files into its out folder (lr_find.png / .csv / .json),
and a feature cache that spills to disk lives in a temporary folder inside it, removed at the end.

May import: errors, fileio, settings, strategies, data, tasks, and the other runs modules. accelerate is
imported when the sweep starts (the heavy-library exception, as in the loop).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tunelab.data.examples import Splits
from tunelab.data.images import image_pixel_limit
from tunelab.errors import TunelabError
from tunelab.fileio import atomic_write_bytes, atomic_write_text, make_folder, save_json
from tunelab.runs.epoch import seed_everything
from tunelab.runs.job import Job, build_feed, load_job
from tunelab.runs.loaders import EpochShuffle, make_loader
from tunelab.runs.loop import mixed_precision_mode
from tunelab.runs.lr_find_plot import plot_png
from tunelab.runs.optim import build_optimizer
from tunelab.runs.rundir import RunDir
from tunelab.settings import LrFindConfig
from tunelab.strategies import set_train_mode
from tunelab.tasks.base import balanced_class_weights, task_loss

if TYPE_CHECKING:
    from accelerate import Accelerator

SMOOTHING = 0.98
"""Weight of the running average in the smoothed loss (fastai's value): about the last 50 steps count."""
DIVERGED = 4.0
"""Stop when the smoothed loss exceeds this multiple of the best smoothed loss so far (fastai's rule)."""
MIN_BATCHES = 4
"""A pass over the training split must hold at least this many full steps: fewer, and the sweep would
fit the same handful of examples again and again, and its curve would say more about them than the lr."""
SUGGESTED_BY = "minimum / 10"
"""The rule the suggestion follows (see the module docstring for why not the steepest point)."""
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


def lr_find(config: LrFindConfig, progress: bool = True) -> LrFindResult:
    """Run the lr range test `config` describes, write its plot, table and summary, return the result.

    Prints what is tested to stderr as `train` does (`LrFindResult.report` has the readings); `progress`
    shows a bar over the steps. Bad settings or data fail before anything is written.
    """
    started = time.perf_counter()
    with image_pixel_limit(config.max_image_pixels):
        seed_everything(config.seed)
        job = load_job(config.as_train_config())  # the data, the model and the settings a train would use
        _check_trainable(job)
        _check_enough_data(job, config)
        return _run(config, job, progress, started)


def _run(config: LrFindConfig, job: Job, progress: bool, started: float) -> LrFindResult:
    from accelerate import Accelerator

    accelerator = Accelerator(
        mixed_precision=mixed_precision_mode(job.config.mixed_precision), cpu=not torch.cuda.is_available()
    )
    created = not Path(config.out).exists()
    out = make_folder(config.out)
    try:
        curve = _measure(config, job, accelerator, out, progress)
        if not curve.lrs:
            raise TunelabError(f"{curve.stopped}, the first step: check the data, or try --mixed-precision no")
    except BaseException:  # an error or Ctrl-C: a folder this call created and left empty goes again
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return _save(config, job, curve, out, time.perf_counter() - started)


def _measure(config: LrFindConfig, job: Job, accelerator: Accelerator, out: Path, progress: bool) -> _Curve:
    """Say what is tested, build the datasets (the feature cache in a temporary folder), the optimizer and
    the loader as train does, and run the sweep."""
    settings, plan = job.config, job.plan
    print(
        f"{settings.model} + {plan.strategy.spec()} on {settings.task}: {len(job.splits.train)} train examples, "
        f"{len(job.splits.train.classes)} classes",
        file=sys.stderr,
    )
    print(plan.summary_line(), file=sys.stderr)
    # lr-find never validates, but build_feed caches validation too: one example keeps that cheap.
    job = replace(job, splits=Splits(job.splits.train, job.splits.val.subset(range(min(1, len(job.splits.val))))))
    with tempfile.TemporaryDirectory(dir=out, prefix=".lr-find-cache-") as spill:
        feed = build_feed(job, RunDir(Path(spill)), accelerator)  # a cache that spills goes to `spill`
        groups = plan.optimizer_groups(1.0, settings.weight_decay)  # at lr 1.0 each group's lr is its scale
        scales = [g["lr"] for g in groups]
        optimizer = build_optimizer(settings, groups, accelerator.device)  # what train builds
        sampler = EpochShuffle(len(feed.train), settings.seed)
        loader = make_loader(feed.train, settings.batch_size, feed.collate, settings.num_workers, sampler)
        model, optimizer, loader = accelerator.prepare(plan.backbone.model, optimizer, loader)
        set_train_mode(plan.backbone.model)
        shown = ", ".join(
            dict.fromkeys(f"{g['name'].removesuffix('.no_decay')} {s:g}x" for g, s in zip(groups, scales))
        )
        print(
            f"lr-find: {config.steps} steps, head lr {config.start_lr:g} to {config.end_lr:g}; "
            f"each parameter group at its scale: {shown}",
            file=sys.stderr,
        )
        sweep = _Sweep(job, accelerator, model, optimizer, tuple(scales), loader, feed.start, _loss(job, accelerator))
        return _sweep(sweep, config, progress)


# ---------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class _Curve:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    group_lrs: dict[str, list[float]]
    stopped: str


def schedule(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """The head lr of each step: geometric from start_lr to end_lr, both included."""
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))


@dataclass(frozen=True)
class _Sweep:
    """What a step of the sweep works with, as accelerate prepared it."""

    job: Job
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scales: tuple[float, ...]
    """Each optimizer group's lr as a multiple of the head lr."""
    loader: DataLoader
    start: int
    """The block the batches enter (see Feed.start)."""
    loss: Callable[..., torch.Tensor]
    """The training loss, with the run's class weights and label smoothing."""


def _sweep(sweep: _Sweep, config: LrFindConfig, progress: bool) -> _Curve:
    """Step the optimizer at the growing lr; stop at end_lr, at a non-finite loss, or past DIVERGED x the best."""
    settings, optimizer, accelerator = sweep.job.config, sweep.optimizer, sweep.accelerator
    names = [g["name"] for g in optimizer.param_groups]
    curve = _Curve([], [], [], {name: [] for name in names}, f"reached end_lr {config.end_lr:g}")
    average, best = 0.0, math.inf
    batches = _endless(sweep.loader)
    bar = tqdm(
        schedule(config.start_lr, config.end_lr, config.steps),
        desc="lr-find",
        disable=not progress or not accelerator.is_main_process,
        leave=False,
        dynamic_ncols=True,
    )
    for i, lr in enumerate(bar):
        for group, scale in zip(optimizer.param_groups, sweep.scales):
            group["lr"] = float(lr) * scale
        loss = _step_loss(sweep, batches)
        if not math.isfinite(loss):
            curve = replace(curve, stopped=f"loss became {loss} at lr {lr:.2g}")
            break
        if settings.grad_clip is not None:
            accelerator.clip_grad_norm_(sweep.model.parameters(), settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smooth = average / (1 - SMOOTHING ** (i + 1))  # bias-corrected: the average starts at 0
        curve.lrs.append(float(lr))
        curve.losses.append(loss)
        curve.smoothed.append(smooth)
        for name, group in zip(names, optimizer.param_groups):
            curve.group_lrs[name].append(group["lr"])
        best = min(best, smooth)
        bar.set_postfix(lr=f"{lr:.1e}", loss=f"{smooth:.4f}")
        if smooth > DIVERGED * best:
            curve = replace(curve, stopped=f"diverged at lr {lr:.2g} (smoothed loss above {DIVERGED:g}x its best)")
            break
    bar.close()
    return curve


def _step_loss(sweep: _Sweep, batches: Iterator) -> float:
    """The mean loss of one step's batches (grad_accumulation of them), their gradients summed into .grad."""
    job, accelerator = sweep.job, sweep.accelerator
    accumulate = job.config.grad_accumulation
    trained = tuple(p for group in job.plan.groups for p in group.params)

    def backward(loss: torch.Tensor) -> None:
        accelerator.backward(loss / accumulate)

    total = 0.0
    for _ in range(accumulate):
        inputs, labels = next(batches)

        def compute_loss() -> torch.Tensor:
            with accelerator.autocast():
                return sweep.loss(sweep.model(inputs, start=sweep.start), labels)  # noqa: B023  called right away

        if job.adversary is not None:
            total += job.adversary.backward(compute_loss, backward, trained).item()
        else:
            loss = compute_loss()
            backward(loss)
            total += loss.item()
    return total / accumulate


def _loss(job: Job, accelerator: Accelerator) -> Callable[..., torch.Tensor]:
    """The loss train minimises: task_loss with --class-weights and --label-smoothing (as `runs.epoch` builds it)."""
    config, weight = job.config, None
    if config.class_weights == "balanced":
        train = job.splits.train
        weight = balanced_class_weights(train.labels, len(train.classes)).to(accelerator.device)
    return functools.partial(task_loss, weight=weight, label_smoothing=config.label_smoothing)


def _endless(loader) -> Iterator:
    """The training batches, pass after pass, each pass in its own (seed, pass) order."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


# ---------------------------------------------------------------- reading the curve, saving it


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


def _save(config: LrFindConfig, job: Job, curve: _Curve, out: Path, seconds: float) -> LrFindResult:
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


# ---------------------------------------------------------------- refusing what cannot be tested


def _check_trainable(job: Job) -> None:
    if job.plan.trainable_params == 0:
        raise TunelabError(
            f"--strategy {job.plan.strategy.spec()} trains nothing on {job.config.model}: an lr range test needs "
            "parameters to train; choose a strategy that trains some (e.g. none trains the head)"
        )


def _check_enough_data(job: Job, config: LrFindConfig) -> None:
    per_step = job.config.batch_size * job.config.grad_accumulation
    have, need = len(job.splits.train), MIN_BATCHES * per_step
    if have < need:
        accumulated = (
            f" x --grad-accumulation {job.config.grad_accumulation}" if job.config.grad_accumulation > 1 else ""
        )
        raise TunelabError(
            f"{config.data}: the training split has {have} examples; lr-find needs at least {need} "
            f"({MIN_BATCHES} steps of --batch-size {job.config.batch_size}{accumulated}) so that a pass holds "
            "several batches: give more data or a smaller --batch-size"
        )
