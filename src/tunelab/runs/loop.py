"""The one training loop, on Hugging Face accelerate: the same code on one CPU and under `accelerate launch`.

The loop receives parameter groups from a Plan and knows nothing about strategies. Each epoch ends with
a checkpoint of the last epoch (for --resume) written as a new directory and committed by rewriting one
small pointer file, so an interrupt at any moment leaves either the previous or the new checkpoint,
never a mix. A run is complete when summary.json exists.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tunelab.runs.adversary import make_adversary
from tunelab.fileio import atomic_write_text, load_json, read_text, save_json
from tunelab.runs.checkpoint_io import load_optimizer, save_optimizer
from tunelab.settings.fields import TrainConfig, from_yaml_file, to_yaml
from tunelab.data.examples import Splits
from tunelab.errors import TunelabError, brief
from tunelab.runs.evaluate import predict_logits
from tunelab.runs.feature_cache import build_cache, collate_features
from tunelab.runs.loaders import (
    EpochShuffle,
    check_modality,
    collate_for,
    example_dataset,
    infer_task,
    length_order,
    load_splits,
    make_loader,
    select_splits,
)
from tunelab.runs.memory import PeakMemory
from tunelab.runs.prepare import prepare
from tunelab.runs.rundir import FORMAT_VERSION, RunDir, load_trained, save_trained
from tunelab.strategies import set_train_mode
from tunelab.tasks import get_task, task_loss

RESUME_MAY_DIFFER = {"resume", "epochs", "patience", "num_workers", "out"}  # out: the run directory may have moved


def train(config: TrainConfig) -> dict:
    """Train a model as `config` says and return the summary (also written to <out>/summary.json).

    A run that fails or is interrupted leaves its last committed checkpoint for --resume and nothing else:
    its spilled feature cache is deleted, and a run directory this call created is removed again when no
    epoch was committed, so bad input never leaves a half-written run behind.
    """
    run = RunDir(Path(config.out))
    existed = run.path.exists()
    resume_from = _check_run_dir(run, config)  # before anything in `out` is touched: it may not be ours
    try:
        with PeakMemory() as memory:
            return _train(config, run, resume_from, memory)
    except BaseException:
        if _is_main_process():
            shutil.rmtree(run.cache, ignore_errors=True)
            if not existed and not (run.checkpoint / "latest").is_file():
                shutil.rmtree(run.path, ignore_errors=True)
        raise


def _is_main_process() -> bool:
    """Rank 0 of a launch (or the only process): without relying on an Accelerator that may not exist yet."""
    return int(os.environ.get("RANK", "0")) == 0


def _train(config: TrainConfig, run: RunDir, resume_from: Path | str | None, memory: PeakMemory) -> dict:
    from accelerate import Accelerator

    started = time.perf_counter()
    # cpu=True without a GPU: under a multi-process launcher that makes accelerate use gloo (MULTI_CPU)
    accelerator = Accelerator(mixed_precision=_mixed_precision(config.mixed_precision), cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    if resume_from == "complete":  # killed after it finished: nothing to redo, only leftovers to tidy
        if main:
            shutil.rmtree(run.checkpoint, ignore_errors=True)
            shutil.rmtree(run.cache, ignore_errors=True)
            print(f"{run.path} is already complete; nothing to resume", file=sys.stderr)
        return load_json(run.summary)
    if main:
        _remove_stale_temp_files(run)
    seed_everything(config.seed)

    task = infer_task(config.data, config.task)
    kind = get_task(task)
    splits = load_splits(task, config.data, config.val_data, config.val_fraction, config.seed, config.text_column, config.label_column)
    splits = select_splits(splits, config.folds, config.fold, config.train_fraction, config.seed)
    plan = prepare(config.model, config.strategy, len(splits.train.classes), config.trust_remote_code, task=task)
    backbone = plan.backbone
    check_modality(task, backbone)
    adversary = make_adversary(config, backbone)
    config = replace(config, task=task, lr=config.lr or plan.strategy.default_lr)
    if main:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config, to_yaml(replace(config, resume=False)))  # the run's settings, not how it was started
        print(f"{config.model} + {plan.strategy.spec()} on {task}: {len(splits.train)} train / {len(splits.val)} val examples, "
              f"{len(splits.train.classes)} classes", file=sys.stderr)
        print(plan.summary_line(), file=sys.stderr)
        if adversary is not None:
            print(f"adversarial training: {adversary.describe()}", file=sys.stderr)

    order = length_order(splits.val)  # validation only measures: run it with the least padding
    if order is not None:
        splits = Splits(splits.train, splits.val.subset(order))
    # Frozen prefix: computed once when it is a pure function of the input (no augmentation).
    k = plan.cached_prefix
    augment = config.augment if config.augment is not None else not (config.cache and k > 0)
    # the adversary perturbs the embeddings every step, so they cannot be computed once
    use_cache = config.cache and k > 0 and not (backbone.modality == "image" and augment) and adversary is None
    collate = collate_for(backbone, config.max_length, task)
    cache_started = time.perf_counter()
    if use_cache:

        def cached(name, examples):
            dataset = example_dataset(examples, backbone, train=False, augment=False, task=task, max_length=config.max_length)
            return build_cache(
                backbone.model, k, make_loader(dataset, config.batch_size, collate, config.num_workers),
                dataset.labels, config.cache_memory_mb / 2, run.cache / f"{name}-{accelerator.process_index}.npy",
                accelerator.device, desc=f"caching {name} features (blocks 0-{k - 1})",
            )

        train_set, val_set = cached("train", splits.train), cached("val", splits.val)
        collate, start = collate_features, k
    else:
        train_set = example_dataset(splits.train, backbone, train=True, augment=augment, task=task, max_length=config.max_length)
        val_set = example_dataset(splits.val, backbone, train=False, augment=False, task=task, max_length=config.max_length)
        start = 0
    cache_seconds = time.perf_counter() - cache_started if use_cache else 0.0

    sampler = EpochShuffle(len(train_set), config.seed)
    train_loader = make_loader(train_set, config.batch_size, collate, config.num_workers, sampler)
    val_loader = make_loader(val_set, config.batch_size, collate, config.num_workers)
    optimizer = torch.optim.AdamW(plan.optimizer_groups(config.lr, config.weight_decay), fused=fused_adamw(accelerator.device))
    model, optimizer, train_loader, val_loader = accelerator.prepare(backbone.model, optimizer, train_loader, val_loader)
    total_steps = config.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, config.warmup))

    state = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0, "metrics": []}
    if resume_from is not None:
        state = _restore(resume_from, backbone.model, optimizer, scheduler)
        if main:
            print(f"resuming after epoch {state['epoch']} from {resume_from}", file=sys.stderr)

    classes = splits.train.classes
    score_val = kind.scorer(splits.val, backbone, config.max_length)
    trained = [p for group in plan.groups for p in group.params]
    meta = {"classes": list(classes), "model": config.model, "strategy": plan.strategy.spec(), "task": task}
    for epoch in range(state["epoch"], config.epochs):
        if config.patience is not None and state["bad_epochs"] >= config.patience:
            break
        epoch_started = time.perf_counter()
        seed_everything(config.seed * 1_000_003 + epoch)
        train_loader.set_epoch(epoch)  # accelerate would otherwise count epochs itself, from 0 on resume
        set_train_mode(backbone.model)
        train_loss = _train_epoch(accelerator, model, optimizer, scheduler, train_loader, start, config, epoch, main,
                                  adversary=adversary, trained=trained)
        logits, labels = predict_logits(accelerator, model, val_loader, start)
        val_loss = float(task_loss(logits, torch.from_numpy(labels)))
        scores = score_val(logits, labels)
        score = scores[kind.metric]
        record = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, **{f"val_{k}": v for k, v in scores.items()},
            "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - epoch_started,
        }
        state["metrics"].append(record)
        improved = score > state["best_score"]
        state.update(epoch=epoch + 1, bad_epochs=0 if improved else state["bad_epochs"] + 1)
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1)
        if not math.isfinite(val_loss):
            raise TunelabError(f"validation loss became {val_loss} after epoch {epoch + 1}; lower --lr or check the data"
                               + _kept(epoch, config))
        if main:
            # Metrics and the best model first, the checkpoint that commits the epoch last: a kill in between
            # resumes from the previous epoch and rewrites both exactly as they were.
            atomic_write_text(run.metrics, "".join(f"{json.dumps(m, sort_keys=True)}\n" for m in state["metrics"]))
            if improved:
                save_trained(run.model, backbone.model, meta)
            _save_checkpoint(run, backbone.model, optimizer, scheduler, state, meta)
            print(f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                  f"val {kind.metric} {score:.4f}{' *' if improved else ''} ({record['seconds']:.1f}s)", file=sys.stderr)
        accelerator.wait_for_everyone()

    summary = {
        "format_version": FORMAT_VERSION, "model": config.model, "strategy": plan.strategy.spec(), "task": task,
        "metric": kind.metric, "score": state["best_score"], "best_epoch": state["best_epoch"],
        "epochs": state["epoch"], "trainable_params": plan.trainable_params, "total_params": plan.total_params,
        "train_examples": len(splits.train), "val_examples": len(splits.val), "classes": list(classes),
        "cached_blocks": k if use_cache else 0, "cache_seconds": cache_seconds, "augment": augment,
        "train_seconds": time.perf_counter() - started, "peak_memory_mb": memory.mb,
        "checkpoint_bytes": run.model.stat().st_size if main else 0, "processes": accelerator.num_processes,
        "metrics_last": state["metrics"][-1] if state["metrics"] else None,
    }
    if main:
        save_json(run.summary, summary)
        shutil.rmtree(run.cache, ignore_errors=True)
        shutil.rmtree(run.checkpoint, ignore_errors=True)  # the run is complete: nothing left to resume
        print(f"best val {kind.metric} {summary['score']:.4f} at epoch {summary['best_epoch']}; run saved in {run.path}", file=sys.stderr)
    accelerator.end_training()
    return summary


def _train_epoch(accelerator, model, optimizer, scheduler, loader, start, config, epoch, main, adversary=None, trained=()) -> float:
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not main, leave=False, dynamic_ncols=True)
    for inputs, labels in bar:

        def compute_loss(inputs=inputs, labels=labels):
            with accelerator.autocast():
                return task_loss(model(inputs, start=start), labels)

        if adversary is None:
            loss = compute_loss()
            accelerator.backward(loss)
        else:
            loss = adversary.backward(compute_loss, accelerator.backward, trained)
        if not torch.isfinite(loss):  # before the step, so the weights of the last good step are what is left
            raise TunelabError(f"loss became {loss.item()} at epoch {epoch + 1}, step {count + 1}; lower --lr or check the data"
                               + _kept(epoch, config))
        if config.grad_clip is not None:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.item()
        count += 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _kept(completed_epochs: int, config: TrainConfig) -> str:
    """The end of a divergence message: which checkpoint is still there."""
    if completed_epochs == 0:
        return "; no epoch had completed, so nothing was saved"
    return f"; the last good checkpoint (epoch {completed_epochs}) is kept in {config.out}"


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


def _check_run_dir(run: RunDir, config: TrainConfig) -> Path | str | None:
    """Refuse to overwrite a run; with --resume return the checkpoint to continue from (None: start fresh).

    --resume of a run that is already complete returns "complete": a kill can land after summary.json was
    written, and resuming such a run should succeed, not fail.
    """
    latest = run.checkpoint / "latest"
    if not config.resume:
        if run.complete or latest.is_file():
            state = "a finished run" if run.complete else "an unfinished run (continue it with --resume)"
            raise TunelabError(f"{run.path} already holds {state}; choose another --out")
        _check_only_run_files(run)
        return None
    if run.complete:
        summary = load_json(run.summary)
        if not isinstance(summary, dict) or int(summary.get("format_version", 0)) > FORMAT_VERSION:
            raise TunelabError(f"{run.summary} was written by a newer tunelab (or is damaged); upgrade tunelab")
        return "complete"
    if not latest.is_file():
        _check_only_run_files(run)
        return None
    saved = from_yaml_file(TrainConfig, run.config)
    differs = [k for k, v in asdict(config).items() if k not in RESUME_MAY_DIFFER and v is not None and v != getattr(saved, k)]
    differs = [k for k in differs if not (k in ("lr", "task") and getattr(config, k) in (None, "auto"))]
    if differs:
        raise TunelabError(f"cannot resume {run.path}: settings differ from the saved run: {', '.join(differs)}")
    return checkpoint_folder(run)


CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}")
"""What checkpoint/latest may hold: a folder name beside it, never a path that leads out of the run."""


def checkpoint_folder(run: RunDir) -> Path:
    """The committed checkpoint that checkpoint/latest names, checked: a damaged pointer is an error, not a path."""
    latest = run.checkpoint / "latest"
    name = read_text(latest, "checkpoint pointer").strip()
    folder = run.checkpoint / name
    if not CHECKPOINT_NAME.fullmatch(name) or not folder.is_dir():
        raise TunelabError(
            f"{latest} is damaged: it names {name[:60]!r}, not a checkpoint folder in {run.checkpoint}; "
            "start the run again without --resume in a new --out"
        )
    return folder


RUN_FILE = re.compile(r"config\.yaml|metrics\.jsonl|model\.safetensors|summary\.json|checkpoint|cache|\..*\.tmp")
CACHE_FILE = re.compile(r"(train|val)-\d+\.npy")
CHECKPOINT_FILE = re.compile(r"latest|epoch-\d{4,}|\..*\.tmp")
"""What a run directory, its cache/ and its checkpoint/ may hold: anything else is not ours to delete."""


def _check_only_run_files(run: RunDir) -> None:
    """Refuse an --out that holds other files: a run deletes its checkpoint/ and cache/ folders when it ends,
    so `--out .` in a project with a cache/ folder would otherwise lose the user's files."""
    if not run.path.is_dir():
        if run.path.exists():
            raise TunelabError(f"--out {run.path} is a file; give a folder for the run")
        return
    ours = {run.path: RUN_FILE, run.cache: CACHE_FILE, run.checkpoint: CHECKPOINT_FILE}
    foreign = sorted(
        p.relative_to(run.path).as_posix() for folder, pattern in ours.items() if folder.is_dir()
        for p in folder.iterdir() if not pattern.fullmatch(p.name)
    )
    if foreign:
        raise TunelabError(
            f"--out {run.path} already holds other files ({brief(', '.join(foreign), 80)}); a run writes and deletes "
            "its own files there, so give it a new or empty folder"
        )


def _remove_stale_temp_files(run: RunDir) -> None:
    """Temporary files of atomic writes that a killed process left behind (see checkpoint_io)."""
    for folder in (run.path, run.checkpoint, *run.checkpoint.glob("epoch-*")):
        for temp in folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)


def _save_checkpoint(run: RunDir, model, optimizer, scheduler, state: dict, meta: dict) -> None:
    """Write checkpoint/epoch-N/ completely, then point checkpoint/latest at it, then drop older ones."""
    name = f"epoch-{state['epoch']:04d}"
    folder = run.checkpoint / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    save_trained(folder / "trained.safetensors", model, meta)
    save_optimizer(folder / "optimizer.safetensors", optimizer)
    save_json(folder / "state.json", {**state, "scheduler": scheduler.state_dict()})
    atomic_write_text(run.checkpoint / "latest", name)
    for old in run.checkpoint.glob("epoch-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def _restore(folder: Path, model, optimizer, scheduler) -> dict:
    load_trained(folder / "trained.safetensors", model)
    load_optimizer(folder / "optimizer.safetensors", optimizer)
    state = load_json(folder / "state.json")
    scheduler.load_state_dict(state.pop("scheduler"))
    return state
