"""The one training loop, on Hugging Face accelerate: the same code on one CPU and under `accelerate launch`.

`train(config)` reads top to bottom: check the run directory, load the data and prepare the model (and
the feature cache), build what a step needs, restore a checkpoint when resuming, run the epochs (chosen on
validation), score the best epoch once (on the test set when there is one; `runs.sanity` flags), write the
summary. The loop receives parameter groups from a Plan and knows nothing about strategies. Its
collaborators: `runs.rundir` (may a run start here, what a failed run leaves), `runs.identity` (may it
resume with these settings, compared resolved), `runs.job` (the data, the model, the datasets),
`runs.epoch` (what a step works with, one step, one epoch, the epochs with validation and patience),
`runs.checkpoints.CheckpointSaver` (saving each epoch, restoring for --resume),
`runs.adversary` (adversarial gradients), `runs.domain` (--adapt: DANN's domain classifier in each step,
AdaBN after the epochs) and `runs.recipe` (what a strategy asks beyond its groups: phases,
a probe before epoch 1, an L2-SP pull, a weight mix after training). A run is complete when summary.json exists.

May import: errors, fileio, settings, strategies, data, tasks, and the other runs modules. accelerate is imported
lazily when training starts (the heavy-library exception).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.data.images import image_pixel_limit
from tunelab.fileio import load_json, save_json
from tunelab.runs import domain
from tunelab.runs.accelerator import make_accelerator
from tunelab.runs.checkpoints import CheckpointSaver, Progress
from tunelab.runs.epoch import Step, Validation, _build_step, _fit, seed_everything
from tunelab.runs.evaluate import Scored, score_once
from tunelab.runs.identity import check_resume
from tunelab.runs.job import Feed, Job, announce, build_feed, load_job, model_meta
from tunelab.runs.loaders import collate_for, example_dataset, make_loader
from tunelab.runs.memory import PeakMemory
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
    log_summary,
    start_tracking,
)
from tunelab.runs.trained import load_trained
from tunelab.settings import TrainConfig

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
    started = time.perf_counter()
    accelerator = make_accelerator(
        config.mixed_precision,
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


# ---------------------------------------------------------------- after the epochs: the score, the summary


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
