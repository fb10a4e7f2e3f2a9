"""The one training loop, on Hugging Face accelerate: the same code on one CPU and under `accelerate launch`.

`train(config)` reads top to bottom: check the run directory, load the data and prepare the model (and
the feature cache), build what a step needs, restore a checkpoint when resuming, run the epochs (chosen on
validation), score the best epoch once (on the test set when there is one; `runs.sanity` flags), write the
summary. The loop receives parameter groups from a Plan and knows nothing about strategies. Its
collaborators: `runs.rundir` (may a run start here, what a failed run leaves), `runs.identity` (may it
resume with these settings, compared resolved), `runs.job` (the data, the model, the datasets),
`runs.checkpoints.CheckpointSaver` (saving each epoch, restoring for --resume) and
`runs.adversary` (adversarial gradients). A run is complete when summary.json exists.

May import: errors, fileio, settings, strategies, data, tasks, and the other runs modules. accelerate is imported
lazily when training starts (the heavy-library exception).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tunelab.data.images import image_pixel_limit
from tunelab.errors import TunelabError
from tunelab.fileio import load_json, save_json
from tunelab.runs.adversary import Adversary
from tunelab.runs.checkpoints import CheckpointSaver, Progress
from tunelab.runs.evaluate import Scored, predict_logits, score_once
from tunelab.runs.identity import check_resume
from tunelab.runs.job import Feed, Job, announce, build_feed, load_job, model_meta
from tunelab.runs.loaders import EpochShuffle, collate_for, example_dataset, make_loader
from tunelab.runs.memory import PeakMemory
from tunelab.runs.run_lock import locked_run
from tunelab.runs.rundir import (
    FORMAT_VERSION,
    RunDir,
    StartPoint,
    check_start,
    clean_up_after_failure,
    remove_leftovers,
    remove_stale_temp_files,
)
from tunelab.runs.sanity import warning_lines
from tunelab.runs.trained import load_trained
from tunelab.settings import TrainConfig
from tunelab.strategies import set_train_mode
from tunelab.tasks.base import task_loss

if TYPE_CHECKING:
    from accelerate import Accelerator


def train(config: TrainConfig) -> dict:
    """Train a model as `config` says and return the summary (also written to <out>/summary.json).

    A run that fails or is interrupted leaves its last committed checkpoint for --resume and nothing else:
    its spilled feature cache is deleted, and a run directory this call created is removed again when no
    epoch was committed, so bad input never leaves a half-written run behind.
    """
    run = RunDir(Path(config.out))
    # One process per run folder (runs.run_lock), held until the run has finished or tidied up; taken before
    # the folder is looked at, so two processes cannot both find it free.
    with locked_run(run.path, main=_is_main_process()) as created:
        start = check_start(run, config)  # before anything in `out` is written: it may not be ours
        if start.checkpoint is not None:
            check_resume(run, config)  # the settings that need no model: refused in a second, nothing loaded
        try:
            # Every image dataset of the run (train, validation, test) refuses images over max_image_pixels.
            with PeakMemory() as memory, image_pixel_limit(config.max_image_pixels):
                return _train(config, run, start, memory)
        except BaseException:  # KeyboardInterrupt (Ctrl-C, and SIGTERM from the CLI) too: the same state as an error
            if _is_main_process():
                clean_up_after_failure(run, created)
            raise


def _train(config: TrainConfig, run: RunDir, start: StartPoint, memory: PeakMemory) -> dict:
    """The run, from `start`: every step in the order it happens."""
    from accelerate import Accelerator

    started = time.perf_counter()
    # cpu=True without a GPU: under a multi-process launcher that makes accelerate use gloo (MULTI_CPU)
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config.mixed_precision), cpu=not torch.cuda.is_available()
    )
    main = accelerator.is_main_process
    if start.complete:  # killed after it finished: nothing to redo, only leftovers to tidy
        if main:
            remove_leftovers(run)
            print(f"{run.path} is already complete; nothing to resume", file=sys.stderr)
        return load_json(run.summary)
    if main:
        remove_stale_temp_files(run)
    seed_everything(config.seed)

    job = load_job(config)  # the data, the model prepared for it, the settings that depend on both
    if start.checkpoint is not None:  # every setting resolved, before announce rewrites config.yaml
        check_resume(run, job.config, job.plan)
    if main:
        announce(run, job)
    feed = build_feed(job, run, accelerator)  # raw examples, or the frozen prefix's output computed once
    step, validation = _build_step(job, feed, accelerator)
    saver = CheckpointSaver(run, job.plan.backbone.model, step.optimizer, step.scheduler, model_meta(job))
    progress = Progress()
    if start.checkpoint is not None:
        progress = saver.restore(start.checkpoint)
        if main:
            print(f"resuming after epoch {progress.epoch} from {start.checkpoint.path}", file=sys.stderr)

    progress = _fit(job, step, validation, saver, progress)
    scored = _score_best(job, step, validation, run)  # the chosen epoch, scored once: on test when there is one

    summary = _summary(
        job,
        feed,
        progress,
        scored,
        {
            "train_seconds": time.perf_counter() - started,
            "peak_memory_mb": memory.mb,
            "checkpoint_bytes": run.model.stat().st_size if main else 0,
            "processes": accelerator.num_processes,
        },
    )
    if main:
        save_json(run.inside(run.summary), summary)
        remove_leftovers(run)  # the run is complete: nothing left to resume
        print(f"{_result_line(job.task.metric, progress, scored)}; run saved in {run.path}", file=sys.stderr)
        for line in warning_lines(scored.flags):
            print(line, file=sys.stderr)
    accelerator.end_training()
    return summary


# ---------------------------------------------------------------- one step, one epoch, the epochs


@dataclass(frozen=True)
class Step:
    """What an optimisation step works with, as accelerate prepared it."""

    accelerator: Accelerator
    """Devices, processes, mixed precision, gradient sync."""
    model: nn.Module
    """The prepared model (wrapped for DDP under a multi-process launch)."""
    optimizer: torch.optim.Optimizer
    """AdamW over the plan's parameter groups."""
    scheduler: torch.optim.lr_scheduler.LambdaLR
    """Warmup then cosine decay, stepped once per batch."""
    loader: DataLoader
    """The training batches, in the (seed, epoch) order."""
    start: int
    """The block the batches enter (see Feed.start)."""
    trained: tuple[nn.Parameter, ...]
    """The parameters the optimizer updates (the adversary adds its gradient to these)."""
    adversary: Adversary | None
    """Adds an adversarial gradient to each step, when asked for."""


@dataclass(frozen=True)
class Validation:
    """How each epoch is scored."""

    loader: DataLoader
    """The validation batches, in a fixed order."""
    score: Callable
    """The task's scorer: (logits, labels) -> {metric name: value}."""
    metric: str
    """The metric that picks the best epoch."""


def _build_step(job: Job, feed: Feed, accelerator: Accelerator) -> tuple[Step, Validation]:
    """Loaders, optimizer and schedule, handed to accelerate (which places them and shards the data)."""
    config, plan = job.config, job.plan
    sampler = EpochShuffle(len(feed.train), config.seed)
    train_loader = make_loader(feed.train, config.batch_size, feed.collate, config.num_workers, sampler)
    val_loader = make_loader(feed.val, config.batch_size, feed.collate, config.num_workers)
    groups = plan.optimizer_groups(config.lr, config.weight_decay)
    optimizer = torch.optim.AdamW(groups, fused=fused_adamw(accelerator.device))
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        plan.backbone.model, optimizer, train_loader, val_loader
    )
    # the schedule counts this process's batches: accelerate has sharded the loader by now
    schedule = warmup_cosine(config.epochs * len(train_loader), config.warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    trained = tuple(p for group in plan.groups for p in group.params)
    step = Step(accelerator, model, optimizer, scheduler, train_loader, feed.start, trained, job.adversary)
    score = job.task.scorer(job.splits.val, plan.backbone, config.max_length)
    return step, Validation(val_loader, score, job.task.metric)


def _fit(job: Job, step: Step, validation: Validation, saver: CheckpointSaver, progress: Progress) -> Progress:
    """The epochs from where `progress` stands: train, validate, save; stop early when out of patience."""
    config, main = job.config, step.accelerator.is_main_process
    for epoch in range(progress.epoch, config.epochs):
        if progress.out_of_patience(config.patience):
            break
        started = time.perf_counter()
        seed_everything(config.seed * 1_000_003 + epoch)  # randomness from (seed, epoch): a resumed run repeats it
        step.loader.set_epoch(epoch)  # accelerate would otherwise count epochs itself, from 0 on resume
        set_train_mode(job.plan.backbone.model)
        train_loss = _train_epoch(step, epoch, config)
        val_loss, scores = _validate(step, validation)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            **{f"val_{k}": v for k, v in scores.items()},
            "lr": step.scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
        }
        progress, improved = progress.after(record, scores[validation.metric])
        if not math.isfinite(val_loss):  # before saving: the last committed checkpoint stays the last good one
            raise TunelabError(
                f"validation loss became {val_loss} after epoch {epoch + 1}; "
                f"lower --lr or check the data{_kept(epoch, config)}"
            )
        if main:
            saver.save_epoch(progress, improved)
            print(
                f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                f"val {validation.metric} {scores[validation.metric]:.4f}{' *' if improved else ''} "
                f"({record['seconds']:.1f}s)",
                file=sys.stderr,
            )
        step.accelerator.wait_for_everyone()
    return progress


def _train_epoch(step: Step, epoch: int, config: TrainConfig) -> float:
    """One pass over the training batches; returns the mean training loss."""
    total, count = 0.0, 0
    hidden = not step.accelerator.is_main_process
    bar = tqdm(step.loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=hidden, leave=False, dynamic_ncols=True)
    for inputs, labels in bar:
        loss = _backward(step, inputs, labels)
        if not torch.isfinite(loss):  # before the step, so the weights of the last good step are what is left
            raise TunelabError(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {count + 1}; "
                f"lower --lr or check the data{_kept(epoch, config)}"
            )
        if config.grad_clip is not None:
            step.accelerator.clip_grad_norm_(step.model.parameters(), config.grad_clip)
        step.optimizer.step()
        step.scheduler.step()
        step.optimizer.zero_grad(set_to_none=True)
        total += loss.item()
        count += 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _backward(step: Step, inputs, labels) -> torch.Tensor:
    """The batch's loss, with its gradients accumulated (plus the adversarial gradient, when asked for)."""

    def compute_loss() -> torch.Tensor:
        with step.accelerator.autocast():
            return task_loss(step.model(inputs, start=step.start), labels)

    if step.adversary is not None:
        return step.adversary.backward(compute_loss, step.accelerator.backward, step.trained)
    loss = compute_loss()
    step.accelerator.backward(loss)
    return loss


def _validate(step: Step, validation: Validation) -> tuple[float, dict]:
    """Validation loss and the task's scores, over every process's share of the validation set."""
    logits, labels = predict_logits(step.accelerator, step.model, validation.loader, step.start)
    return float(task_loss(logits, torch.from_numpy(labels))), validation.score(logits, labels)


def _kept(completed_epochs: int, config: TrainConfig) -> str:
    """The end of a divergence message: which checkpoint is still there."""
    if completed_epochs == 0:
        return "; no epoch had completed, so nothing was saved"
    return f"; the last good checkpoint (epoch {completed_epochs}) is kept in {config.out}"


def _score_best(job: Job, step: Step, validation: Validation, run: RunDir) -> Scored:
    """The best epoch's model (model.safetensors) measured once: on the test set, else on validation again.

    The epoch was chosen on validation, so its validation score is optimistic; a test set scores it on
    examples that took no part in training or selection. Test examples enter at block 0 (the frozen prefix
    computes what the feature cache holds for validation), in length order.
    """
    config, backbone, accelerator = job.config, job.plan.backbone, step.accelerator
    if run.model.is_file():  # written by the best epoch (absent only when no epoch produced a score)
        load_trained(run.model, backbone.model)
    if job.test is None:
        examples, set_name, loader, start = job.splits.val, "validation", validation.loader, step.start
    else:
        dataset = example_dataset(job.test, backbone, False, False, config.task, config.max_length)
        collate = collate_for(backbone, config.max_length, config.task)
        loader = accelerator.prepare(make_loader(dataset, config.batch_size, collate, config.num_workers))
        examples, set_name, start = job.test, "test", 0
    train_labels = job.splits.train.labels
    return score_once(
        accelerator, step.model, loader, start, job.task, examples, set_name, backbone, config.max_length, train_labels
    )


def _result_line(metric: str, progress: Progress, scored: Scored) -> str:
    """The run's last line: the epoch validation chose, and which set scored the run."""
    chosen = f"best val {metric} {progress.best_score:.4f} at epoch {progress.best_epoch}"
    if scored.set_name == "test":
        return f"{chosen}; test {metric} {scored.metrics[metric]:.4f} on {scored.examples} examples"
    return f"{chosen} (selected and scored on the same validation set: optimistic)"


def _summary(job: Job, feed: Feed, progress: Progress, scored: Scored, measured: dict) -> dict:
    """summary.json: what was trained, how well (`scored`: the set that scores it), and the cost (`measured`)."""
    config, plan, splits = job.config, job.plan, job.splits
    tested = scored.set_name == "test"
    return {
        "format_version": FORMAT_VERSION,
        "model": config.model,
        "strategy": plan.strategy.spec(),
        "task": config.task,
        "metric": job.task.metric,
        "score": scored.metrics[job.task.metric] if tested else progress.best_score,  # what a run reports
        "val_score": progress.best_score,  # chose the epoch
        "selected_on": "validation",
        "scored_on": scored.set_name,
        "eval_examples": scored.examples,  # of the set `score` was measured on
        "test_examples": len(job.test) if job.test is not None else 0,
        "chance_score": scored.chance,  # always predicting the most frequent training class, on that set
        "flags": scored.flags,
        "test_metrics": scored.metrics if tested else None,
        "best_epoch": progress.best_epoch,
        "epochs": progress.epoch,
        "trainable_params": plan.trainable_params,
        "total_params": plan.total_params,
        "train_examples": len(splits.train),
        "val_examples": len(splits.val),
        "classes": list(splits.train.classes),
        "cached_blocks": feed.start,
        "cache_seconds": feed.cache_seconds,
        "augment": feed.augment,
        **measured,
        "metrics_last": progress.metrics[-1] if progress.metrics else None,
    }


# ---------------------------------------------------------------- small pieces


def _is_main_process() -> bool:
    """Rank 0 of a launch (or the only process): without relying on an Accelerator that may not exist yet."""
    return int(os.environ.get("RANK", "0")) == 0


def warmup_cosine(total_steps: int, warmup: float):
    """Linear warmup over the first `warmup` fraction of steps, then cosine decay to zero."""
    warm = int(total_steps * warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def fused_adamw(device: torch.device) -> bool:
    """Use the fused AdamW kernel where torch has one (CPU and CUDA): the same update, one kernel per step.

    torch's default on the CPU is a Python loop over parameters; on MiniLM-L6 (22.6M parameters, 2 CPU
    threads) that loop took 4-10x the time of the fused step (benchmarks/README.md, loop overhead).
    Hugging Face `Trainer` uses the fused kernel by default too.
    """
    return device.type in ("cpu", "cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"
