"""The one training loop, on Hugging Face accelerate: the same code on one CPU and under `accelerate launch`.

The loop receives parameter groups from a Plan and knows nothing about strategies. Each epoch ends with
a checkpoint of the last epoch (for --resume) written as a new directory and committed by rewriting one
small pointer file, so an interrupt at any moment leaves either the previous or the new checkpoint,
never a mix. A run is complete when summary.json exists.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint_io import atomic_write_text, load_json, load_optimizer, save_json, save_optimizer
from .config import TrainConfig, from_yaml_file, to_yaml
from .errors import TunelabError
from .evaluate import predict_logits
from .feature_cache import build_cache, collate_features
from .loaders import (
    EpochShuffle,
    check_modality,
    collate_for,
    example_dataset,
    infer_task,
    load_splits,
    make_loader,
    select_splits,
)
from .memory import PeakMemory
from .plan import prepare
from .rundir import FORMAT_VERSION, RunDir, load_trained, save_trained
from .strategies import set_train_mode
from .tasks.metrics import accuracy, macro_f1

RESUME_MAY_DIFFER = {"resume", "epochs", "patience", "num_workers"}


def train(config: TrainConfig) -> dict:
    """Train a model as `config` says and return the summary (also written to <out>/summary.json)."""
    with PeakMemory() as memory:
        return _train(config, memory)


def _train(config: TrainConfig, memory: PeakMemory) -> dict:
    from accelerate import Accelerator

    started = time.perf_counter()
    # cpu=True without a GPU: under a multi-process launcher that makes accelerate use gloo (MULTI_CPU)
    accelerator = Accelerator(mixed_precision=_mixed_precision(config.mixed_precision), cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    run = RunDir(Path(config.out))
    resume_from = _check_run_dir(run, config)
    seed_everything(config.seed)

    task = infer_task(config.data, config.task)
    splits = load_splits(task, config.data, config.val_data, config.val_fraction, config.seed, config.text_column, config.label_column)
    splits = select_splits(splits, config.folds, config.fold, config.train_fraction, config.seed)
    plan = prepare(config.model, config.strategy, len(splits.train.classes))
    backbone = plan.backbone
    check_modality(task, backbone)
    config = replace(config, task=task, lr=config.lr or plan.strategy.default_lr)
    if main:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config, to_yaml(config))
        print(f"{config.model} + {plan.strategy.spec()} on {task}: {len(splits.train)} train / {len(splits.val)} val examples, "
              f"{len(splits.train.classes)} classes", file=sys.stderr)
        print(plan.summary_line(), file=sys.stderr)

    # Frozen prefix: computed once when it is a pure function of the input (no augmentation).
    k = plan.frozen_prefix
    augment = config.augment if config.augment is not None else not (config.cache and k > 0)
    use_cache = config.cache and k > 0 and not (backbone.modality == "image" and augment)
    collate = collate_for(backbone, config.max_length)
    cache_started = time.perf_counter()
    if use_cache:
        train_set, val_set = (
            build_cache(
                backbone.model, k,
                make_loader(example_dataset(examples, backbone, train=False, augment=False), config.batch_size, collate, config.num_workers),
                examples.labels, config.cache_memory_mb / 2, run.cache / f"{name}-{accelerator.process_index}.npy",
                accelerator.device, desc=f"caching {name} features (blocks 0-{k - 1})",
            )
            for name, examples in (("train", splits.train), ("val", splits.val))
        )
        collate, start = collate_features, k
    else:
        train_set = example_dataset(splits.train, backbone, train=True, augment=augment)
        val_set = example_dataset(splits.val, backbone, train=False, augment=False)
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
    meta = {"classes": list(classes), "model": config.model, "strategy": plan.strategy.spec(), "task": task}
    for epoch in range(state["epoch"], config.epochs):
        if config.patience is not None and state["bad_epochs"] >= config.patience:
            break
        epoch_started = time.perf_counter()
        seed_everything(config.seed * 1_000_003 + epoch)
        train_loader.set_epoch(epoch)  # accelerate would otherwise count epochs itself, from 0 on resume
        set_train_mode(backbone.model)
        train_loss = _train_epoch(accelerator, model, optimizer, scheduler, train_loader, start, config, epoch, main)
        logits, labels = predict_logits(accelerator, model, val_loader, start)
        predictions = logits.argmax(1).numpy()
        val_loss = float(F.cross_entropy(logits, torch.from_numpy(labels)))
        score = accuracy(labels, predictions)
        record = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": score,
            "val_macro_f1": macro_f1(labels, predictions, len(classes)), "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_started,
        }
        state["metrics"].append(record)
        improved = score > state["best_score"]
        state.update(epoch=epoch + 1, bad_epochs=0 if improved else state["bad_epochs"] + 1)
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1)
        if main:
            if improved:
                save_trained(run.model, backbone.model, meta)
            _save_checkpoint(run, backbone.model, optimizer, scheduler, state, meta)
            atomic_write_text(run.metrics, "".join(f"{json.dumps(m, sort_keys=True)}\n" for m in state["metrics"]))
            print(f"epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                  f"val accuracy {score:.4f}{' *' if improved else ''} ({record['seconds']:.1f}s)", file=sys.stderr)
        accelerator.wait_for_everyone()

    summary = {
        "format_version": FORMAT_VERSION, "model": config.model, "strategy": plan.strategy.spec(), "task": task,
        "metric": "accuracy", "score": state["best_score"], "best_epoch": state["best_epoch"],
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
        print(f"best val accuracy {summary['score']:.4f} at epoch {summary['best_epoch']}; run saved in {run.path}", file=sys.stderr)
    accelerator.end_training()
    return summary


def _train_epoch(accelerator, model, optimizer, scheduler, loader, start, config, epoch, main) -> float:
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not main, leave=False, dynamic_ncols=True)
    for inputs, labels in bar:
        with accelerator.autocast():
            loss = F.cross_entropy(model(inputs, start=start), labels)
        accelerator.backward(loss)
        if config.grad_clip is not None:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise TunelabError(f"loss became {loss.item()} at epoch {epoch + 1}, step {count + 1}; lower --lr or check the data")
        total += loss.item()
        count += 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


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


def _check_run_dir(run: RunDir, config: TrainConfig) -> Path | None:
    """Refuse to overwrite a run; with --resume return the checkpoint to continue from (None: start fresh)."""
    latest = run.checkpoint / "latest"
    if not config.resume:
        if run.complete or latest.is_file():
            state = "a finished run" if run.complete else "an unfinished run (continue it with --resume)"
            raise TunelabError(f"{run.path} already holds {state}; choose another --out")
        return None
    if run.complete:
        raise TunelabError(f"{run.path} is already complete; nothing to resume")
    if not latest.is_file():
        return None
    saved = from_yaml_file(TrainConfig, run.config)
    differs = [k for k, v in asdict(config).items() if k not in RESUME_MAY_DIFFER and v is not None and v != getattr(saved, k)]
    differs = [k for k in differs if not (k in ("lr", "task") and getattr(config, k) in (None, "auto"))]
    if differs:
        raise TunelabError(f"cannot resume {run.path}: settings differ from the saved run: {', '.join(differs)}")
    return run.checkpoint / latest.read_text().strip()


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
