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

import functools
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
from tunelab.fileio import make_folder
from tunelab.runs.accelerator import make_accelerator
from tunelab.runs.epoch import seed_everything
from tunelab.runs.job import Job, build_feed, load_job
from tunelab.runs.loaders import EpochShuffle, make_loader
from tunelab.runs.lr_find_result import Curve, LrFindResult, save_result
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
    accelerator = make_accelerator(job.config.mixed_precision)
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
    return save_result(config, job, curve, out, time.perf_counter() - started)


def _measure(config: LrFindConfig, job: Job, accelerator: Accelerator, out: Path, progress: bool) -> Curve:
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


def _sweep(sweep: _Sweep, config: LrFindConfig, progress: bool) -> Curve:
    """Step the optimizer at the growing lr; stop at end_lr, at a non-finite loss, or past DIVERGED x the best."""
    settings, optimizer, accelerator = sweep.job.config, sweep.optimizer, sweep.accelerator
    names = [g["name"] for g in optimizer.param_groups]
    curve = Curve([], [], [], {name: [] for name in names}, f"reached end_lr {config.end_lr:g}")
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
