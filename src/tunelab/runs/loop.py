"""The one training loop, on Hugging Face accelerate: the same code on one CPU and under `accelerate launch`.

`train(config)` reads top to bottom: check the run directory, load the data and prepare the model (and
the feature cache), build what a step needs, restore a checkpoint when resuming, run the epochs (chosen on
validation), score the best epoch once (on the test set when there is one; `runs.sanity` flags), write the
summary. The loop receives parameter groups from a Plan and knows nothing about strategies. Its
collaborators: `runs.rundir` (may a run start here, what a failed run leaves), `runs.identity` (may it
resume with these settings, compared resolved), `runs.job` (the data, the model, the datasets),
`runs.checkpoints.CheckpointSaver` (saving each epoch, restoring for --resume),
`runs.adversary` (adversarial gradients), `runs.domain` (--adapt: DANN's domain classifier in each step,
AdaBN after the epochs) and `runs.recipe` (what a strategy asks beyond its groups: phases,
a probe before epoch 1, an L2-SP pull, a weight mix after training). A run is complete when summary.json exists.

May import: errors, fileio, settings, strategies, data, tasks, and the other runs modules. accelerate is imported
lazily when training starts (the heavy-library exception).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from tunelab.runs import domain
from tunelab.runs.adversary import Adversary
from tunelab.runs.checkpoints import CheckpointSaver, Progress
from tunelab.runs.evaluate import Scored, predict_logits, score_once
from tunelab.runs.identity import check_resume
from tunelab.runs.job import Feed, Job, announce, build_feed, load_job, model_meta
from tunelab.runs.loaders import collate_for, example_dataset, make_loader, train_sampler
from tunelab.runs.memory import PeakMemory
from tunelab.runs.optim import build_optimizer, build_scheduler, optimizer_steps
from tunelab.runs.recipe import Recipe, ddp_kwargs
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
from tunelab.runs.tracking import (
    accelerator_kwargs,
    check_trackers,
    ended_on_failure,
    log_epoch,
    log_summary,
    start_tracking,
)
from tunelab.runs.trained import load_trained
from tunelab.settings import TrainConfig
from tunelab.strategies import set_train_mode
from tunelab.tasks.base import balanced_class_weights, target_weight, task_loss

if TYPE_CHECKING:
    from accelerate import Accelerator


def train(config: TrainConfig) -> dict:
    """Train a model as `config` says and return the summary (also written to <out>/summary.json).

    A run that fails or is interrupted leaves its last committed checkpoint for --resume and nothing else:
    its spilled feature cache is deleted, and a run directory this call created is removed again when no
    epoch was committed, so bad input never leaves a half-written run behind.
    """
    check_trackers(config.log_with)  # before the run folder is made: a missing tracker package leaves nothing behind
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
    """Build the Accelerator (its trackers among it) and do the run on it."""
    from accelerate import Accelerator

    started = time.perf_counter()
    # cpu=True without a GPU: under a multi-process launcher that makes accelerate use gloo (MULTI_CPU)
    accelerator = Accelerator(
        mixed_precision=mixed_precision_mode(config.mixed_precision),
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=ddp_kwargs(config),  # a strategy with phases leaves some parameters without gradients
        **accelerator_kwargs(config),  # --log-with: the trackers and the folder they write to (runs.tracking)
    )
    with ended_on_failure(accelerator):  # --log-with: a run that raises ends its tracker runs FAILED (or KILLED)
        return _run(config, run, start, memory, accelerator, started)


def _run(
    config: TrainConfig, run: RunDir, start: StartPoint, memory: PeakMemory, accelerator: Accelerator, started: float
) -> dict:
    """The run, on `accelerator`, from `start`: every step in the order it happens."""
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
    recipe = Recipe.of(job, main)  # phases checked against --epochs; the start the pull and the mix refer to
    if start.checkpoint is not None:  # every setting resolved, before announce rewrites config.yaml
        check_resume(run, job.config, job.plan)
    if main:
        announce(run, job)
    # --log-with: the resolved settings as the tracker run's parameters; a resumed run continues its tracker run
    start_tracking(accelerator, job.config, resumed=start.checkpoint is not None)
    feed = build_feed(job, run, accelerator)  # raw examples, or the frozen prefix's output computed once
    step, validation = _build_step(job, feed, accelerator)
    step = replace(step, loss=recipe.training_loss(step.loss, step.class_weight))  # + an L2-SP pull
    beside = step.dann.classifier if step.dann else None  # DANN's domain classifier: in checkpoints, not the model
    saver = CheckpointSaver(run, job.plan.backbone.model, step.optimizer, step.scheduler, model_meta(job), beside)
    progress = Progress()
    if start.checkpoint is not None:
        progress = saver.restore(start.checkpoint)
        if main:
            print(f"resuming after epoch {progress.epoch} from {start.checkpoint.path}", file=sys.stderr)
    else:  # a probe before epoch 1 (LP-FT); a resumed run's checkpoint holds the probed head already
        recipe.probe_head(job, run, feed, accelerator, step.loss, validation)

    progress = _fit(job, step, validation, saver, progress, recipe)
    progress = recipe.mix_weights(job, step, validation, run, saver.meta, progress)  # WiSE-FT: mixes model.safetensors
    adapted = domain.finish(job, step, run, saver.meta)  # --adapt adabn: target BatchNorm statistics, saved
    scored = _score_best(job, step, validation, run)  # the chosen epoch, scored once: on test when there is one

    summary = _summary(
        job,
        feed,
        progress,
        scored,
        recipe,
        {
            "train_seconds": time.perf_counter() - started,
            "peak_memory_mb": memory.mb,
            "checkpoint_bytes": run.model.stat().st_size if main else 0,
            "processes": accelerator.num_processes,
            **adapted.summary(scored.set_name),  # --adapt: method, target examples, which domain scored
        },
    )
    if main:
        save_json(run.inside(run.summary), summary)
        remove_leftovers(run)  # the run is complete: nothing left to resume
        last = f"{_result_line(job.task.metric, progress, scored)}{adapted.note(scored.set_name)}{recipe.note()}"
        print(f"{last}; run saved in {run.path}", file=sys.stderr)
        for line in warning_lines(scored.flags):
            print(line, file=sys.stderr)
    log_summary(accelerator, summary)
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
    """AdamW or SGD over the plan's parameter groups (`runs.optim.build_optimizer`)."""
    scheduler: torch.optim.lr_scheduler.LambdaLR
    """Warmup then the --scheduler shape, stepped once per optimizer step (`runs.optim.build_scheduler`)."""
    loader: DataLoader
    """The training batches, in the (seed, epoch) order."""
    start: int
    """The block the batches enter (see Feed.start)."""
    trained: tuple[nn.Parameter, ...]
    """The parameters the optimizer updates (the adversary adds its gradient to these)."""
    adversary: Adversary | None
    """Adds an adversarial gradient to each step, when asked for."""
    loss: Callable[..., torch.Tensor] = task_loss
    """The training loss: task_loss with the run's class weights and label smoothing (validation uses it plain)."""
    class_weight: torch.Tensor | None = None
    """The per-class loss weights `loss` applies (--class-weights balanced), on the device; None = all 1."""
    accumulation: int = 1
    """Batches whose gradients add up to one optimizer step (--grad-accumulation)."""
    dann: domain.Dann | None = None
    """--adapt dann: the domain classifier and its reversed gradient, added to each batch; None = off."""


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
    sampler = train_sampler(job.splits.train, plan.backbone, config)  # (seed, epoch) order; --length-grouping
    train_loader = make_loader(feed.train, config.batch_size, feed.collate, config.num_workers, sampler)
    dann = domain.Dann(plan.backbone, config, accelerator.device) if config.adapt == "dann" else None
    if dann is not None:  # each batch: its source examples, then as many unlabelled target examples
        train_loader = dann.loader(feed.train, feed.target, sampler, feed.collate, config)
    val_loader = make_loader(feed.val, config.batch_size, feed.collate, config.num_workers)
    groups = plan.optimizer_groups(config.lr, config.weight_decay)
    groups += dann.optimizer_groups(config.lr, config.weight_decay) if dann else []  # the domain classifier
    optimizer = build_optimizer(config, groups, accelerator.device)
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        plan.backbone.model, optimizer, train_loader, val_loader
    )
    # the schedule counts this process's optimizer steps: accelerate has sharded the loader by now
    total_steps = config.epochs * optimizer_steps(len(train_loader), config.grad_accumulation)
    scheduler = build_scheduler(config, optimizer, total_steps)
    trained = tuple(p for group in plan.groups for p in group.params)
    weight = None
    if config.class_weights == "balanced":  # from the training split's labels (per token label for tagging)
        classes = len(job.splits.train.classes)
        weight = balanced_class_weights(job.splits.train.labels, classes).to(accelerator.device)
    loss = functools.partial(task_loss, weight=weight, label_smoothing=config.label_smoothing)
    step = Step(
        accelerator,
        model,
        optimizer,
        scheduler,
        train_loader,
        feed.start,
        trained,
        job.adversary,
        loss,
        weight,
        config.grad_accumulation,
        dann,
    )
    score = job.task.scorer(job.splits.val, plan.backbone, config.max_length)
    return step, Validation(val_loader, score, job.task.metric)


def _fit(
    job: Job, step: Step, validation: Validation, saver: CheckpointSaver, progress: Progress, recipe: Recipe
) -> Progress:
    """The epochs from where `progress` stands: train (in the epoch's phase), validate, save; stop early when out
    of patience. Saving happens outside the phase: a checkpoint holds every tensor the plan trains."""
    config, main = job.config, step.accelerator.is_main_process
    for epoch in range(progress.epoch, config.epochs):
        if progress.out_of_patience(config.patience):
            break
        started = time.perf_counter()
        seed_everything(config.seed * 1_000_003 + epoch)  # randomness from (seed, epoch): a resumed run repeats it
        step.loader.set_epoch(epoch)  # accelerate would otherwise count epochs itself, from 0 on resume
        with recipe.epoch(epoch):  # the phase's frozen groups get no gradient (train mode follows them)
            set_train_mode(job.plan.backbone.model)
            train_loss = _train_epoch(step, epoch, config)
        val_loss, scores = _validate(step, validation)
        record = {
            "epoch": epoch + 1,
            **recipe.record(epoch),
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
        log_epoch(step.accelerator, record)  # --log-with, once committed (main process only; nothing without a tracker)
        step.accelerator.wait_for_everyone()
    return progress


def _train_epoch(step: Step, epoch: int, config: TrainConfig) -> float:
    """One pass over the training batches; returns the mean training loss (per batch, as the loss option computes it).

    Gradient accumulation, by hand rather than with `accelerator.accumulate`: the batches of an epoch are
    taken in groups of `step.accumulation` (the last group may be shorter, and still steps), each batch's
    summed loss is divided by its group's summed target weight (`tasks.base.target_weight`), so a group's
    gradient is the gradient of one batch of all its examples, a short last batch included; clipping,
    the optimizer and the scheduler step once per group. Gradients are synchronised across processes on a
    group's last batch only (`no_sync`). Groups never span epochs, so a resume after an epoch repeats the
    straight run exactly.
    """
    total, count = 0.0, 0
    hidden = not step.accelerator.is_main_process
    bar = tqdm(step.loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=hidden, leave=False, dynamic_ncols=True)
    for group in _groups(bar, step.accumulation):
        if len(group) == 1:
            shares = [None]  # one batch: its plain mean loss (no accumulation, the code path of batch-size steps)
        else:
            weights = [target_weight(labels, step.class_weight) for _, labels in group]
            shares = [sum(weights)] * len(group)
        for i, ((inputs, labels), share) in enumerate(zip(group, shares)):
            last = i == len(group) - 1
            with contextlib.nullcontext() if last else step.accelerator.no_sync(step.model):
                loss = _backward(step, inputs, labels, share, synced=last)
            if not torch.isfinite(loss):  # before the step, so the weights of the last good step are what is left
                raise TunelabError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {count + 1}; "
                    f"lower --lr or check the data{_kept(epoch, config)}"
                )
            total += loss.item()
            count += 1
        if config.grad_clip is not None:
            step.accelerator.clip_grad_norm_(step.model.parameters(), config.grad_clip)
        step.optimizer.step()
        step.scheduler.step()
        step.optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _groups(batches, size: int):
    """The batches in lists of `size` (the last list shorter when they do not divide evenly)."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _backward(step: Step, inputs, labels, share: torch.Tensor | None = None, synced: bool = True) -> torch.Tensor:
    """The batch's loss, with its gradients accumulated (plus the adversarial gradient, when asked for).

    `share`: None for a batch that is a step of its own (mean loss); else the summed target weight of the
    accumulation group the batch belongs to: the batch's summed loss over it is its part of the group's
    mean. Returns the batch's own mean loss either way, for display and the divergence check.
    `synced`: whether this backward pass synchronises gradients across processes (a group's last batch).
    """
    batch_weight = None if share is None else target_weight(labels, step.class_weight)

    def compute_loss() -> torch.Tensor:
        with step.accelerator.autocast():
            logits = step.model(inputs, start=step.start)
            if share is None:
                return step.loss(logits, labels)
            return step.loss(logits, labels, reduction="sum") / share

    if step.dann is not None:  # source and target rows in one pass: the task loss plus the reversed domain loss
        fraction = 1.0 if share is None else batch_weight / share
        loss = step.dann.backward(step, inputs, labels, share, fraction, synced)
    elif step.adversary is not None:
        loss = _adversarial_backward(step, compute_loss, synced)
    else:
        loss = compute_loss()
        step.accelerator.backward(loss)
    return loss if share is None else loss.detach() * share / batch_weight.clamp_min(1e-12)


def _adversarial_backward(step: Step, compute_loss: Callable[[], torch.Tensor], synced: bool) -> torch.Tensor:
    """The adversary's backward pass for one batch of a group: its attack follows this batch's gradient alone.

    The attack reads the embedding table's gradient to choose its rows and direction; earlier batches of
    the group have left theirs there when the table trains (full fine-tuning), so it is set aside for the
    attack and added back after (the adversary itself keeps every other parameter's earlier gradient). On
    a synchronising pass the set-aside part, which no process has exchanged yet, is averaged across
    processes here, as DDP averages what it synchronises.
    """
    table = step.adversary.embedding.weight
    carried, table.grad = table.grad, None
    loss = step.adversary.backward(compute_loss, step.accelerator.backward, step.trained)
    if carried is not None:
        if synced and step.accelerator.num_processes > 1:
            carried = step.accelerator.reduce(carried, reduction="mean")
        table.grad = carried if table.grad is None else table.grad + carried
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


def _summary(job: Job, feed: Feed, progress: Progress, scored: Scored, recipe: Recipe, measured: dict) -> dict:
    """summary.json: what was trained, how well (`scored`: the set that scores it), the recipe's phases, probe, pull
    or weight mix, and the cost (`measured`)."""
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
        **recipe.summary(),
        **measured,
        "metrics_last": progress.metrics[-1] if progress.metrics else None,
    }


# ---------------------------------------------------------------- small pieces


def _is_main_process() -> bool:
    """Rank 0 of a launch (or the only process): without relying on an Accelerator that may not exist yet."""
    return int(os.environ.get("RANK", "0")) == 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mixed_precision_mode(setting: str) -> str:
    """accelerate's mixed_precision for --mixed-precision: auto = bf16 (or fp16) on a GPU, none on a CPU.

    Public because lr-find builds its Accelerator the same way, so its sweep runs at a run's precision."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"
