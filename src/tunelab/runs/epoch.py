"""The epochs of a run: what a step works with, one optimizer step, one epoch, and the epochs in order.

`_build_step` hands the model, optimizer, schedule and loaders to accelerate once (`Step`, `Validation`);
`_fit` then runs the epochs from where the run stands: each trains in its phase (`runs.recipe`), validates,
saves a checkpoint (`runs.checkpoints.CheckpointSaver`), logs to the trackers once committed, and stops early
when out of patience. `_train_epoch` is one pass over the training batches with gradient accumulation by hand;
`_backward` one batch's backward pass (plain, adversarial, or with DANN's domain loss). Randomness comes from
(seed, epoch), so a resumed run repeats the straight one exactly. `runs.loop` calls these in the run's order.

May import: errors, fileio, settings, strategies, data, tasks, and the other runs modules except `runs.loop`.
accelerate is imported by the loop, which builds the Accelerator; here it is only a type.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tunelab.errors import TunelabError
from tunelab.runs import domain
from tunelab.runs.adversary import Adversary
from tunelab.runs.checkpoints import CheckpointSaver, Progress
from tunelab.runs.evaluate import predict_logits
from tunelab.runs.job import Feed, Job
from tunelab.runs.loaders import make_loader, train_sampler
from tunelab.runs.optim import build_optimizer, build_scheduler, optimizer_steps
from tunelab.runs.recipe import Recipe
from tunelab.runs.tracking import log_epoch
from tunelab.settings import TrainConfig
from tunelab.strategies import set_train_mode
from tunelab.tasks.base import balanced_class_weights, target_weight, task_loss

if TYPE_CHECKING:
    from accelerate import Accelerator


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
