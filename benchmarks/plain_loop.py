"""The floor: a plain hand-written PyTorch loop over the very model tunelab trains, and tunelab's side, timed alike.

The plain loop takes the model, parameter groups and learning rates from `tunelab.runs.prepare.prepare` (so both
sides do the same arithmetic: AdamW with the same (fused) kernel, the same per-group learning rates and weight decay, warmup + cosine,
gradient clipping at 1.0) and then does only what a person would write by hand: a shuffled DataLoader,
forward, backward, step, and an accuracy pass over the validation set after each epoch. With a frozen
prefix of K blocks it runs blocks[:K] under `torch.no_grad()` in eval mode on every batch (the obvious
hand-written way) instead of caching them.

Both sides report the same things: mean seconds per epoch inside the loop (training + validation pass;
tunelab's per-epoch checkpoint is outside it, its one-off feature-cache pass is shared out over the epochs),
end-to-end seconds (loading the model and data included),
best validation accuracy and peak resident memory of the whole run.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tunelab.runs.loaders import collate_for, example_dataset, load_splits
from tunelab.runs.loop import train
from tunelab.runs.memory import PeakMemory
from tunelab.runs.optim import warmup_cosine
from tunelab.runs.prepare import prepare
from tunelab.settings import TrainConfig

CHECKPOINT_ATTENTION = {"minilm-l6": 0.1}
"""Dropout on attention weights in the text checkpoints the plain loop trains (tunelab's default is 0)."""


def as_plain_loop(model_name: str) -> dict:
    """The tunelab settings under which a run trains what `plain_loop` trains: the plain shuffle (no length
    grouping) and, for a text model, its checkpoint's attention dropout. Tables that measure the loop or the
    cache against the plain loop pass them, so they price neither of those defaults."""
    attention = CHECKPOINT_ATTENTION.get(model_name)
    return {"length_grouping": False, **({} if attention is None else {"attention_dropout": attention})}


def plain_loop(
    model_name: str,
    strategy: str,
    data: Path,
    val_data: Path | None,
    epochs: int,
    batch_size: int,
    seed: int,
    augment: bool,
) -> dict:
    """Train by hand; `strategy` only decides which parameters train (retrain:K also fixes the frozen prefix K)."""
    with PeakMemory() as memory:
        started = time.perf_counter()
        torch.manual_seed(seed)
        task = "image-classification" if data.is_dir() else "text-classification"
        splits = load_splits(task, str(data), None if val_data is None else str(val_data), 0.2, seed, None, "label")
        plan = prepare(model_name, strategy, len(splits.train.classes))
        model, k = plan.backbone.model, plan.frozen_prefix
        collate = collate_for(plan.backbone, None)
        train_loader = DataLoader(
            example_dataset(splits.train, plan.backbone, train=True, augment=augment),
            batch_size,
            shuffle=True,
            collate_fn=collate,
        )
        val_loader = DataLoader(
            example_dataset(splits.val, plan.backbone, train=False, augment=False), batch_size, collate_fn=collate
        )
        lr = plan.strategy.default_lr
        optimizer = torch.optim.AdamW(
            plan.optimizer_groups(lr, 0.01), fused=True
        )  # the kernel tunelab uses on CPU/CUDA
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(epochs * len(train_loader), 0.1))
        trainable = [p for p in model.parameters() if p.requires_grad]
        epoch_seconds, best = [], 0.0
        for _ in range(epochs):
            epoch_started = time.perf_counter()
            model.train()
            model.blocks[:k].eval()
            for x, y in train_loader:
                if k:
                    with torch.no_grad():
                        x = model(x, stop=k)
                loss = F.cross_entropy(model(x, start=k), y)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in val_loader:
                    correct += int((model(x).argmax(1) == y).sum())
            best = max(best, correct / len(splits.val))
            epoch_seconds.append(time.perf_counter() - epoch_started)
        total = time.perf_counter() - started
    return {"epoch_s": sum(epoch_seconds) / epochs, "total_s": total, "accuracy": best, "peak_mb": memory.mb}


def tunelab_run(
    model_name: str,
    strategy: str,
    data: Path,
    val_data: Path | None,
    epochs: int,
    batch_size: int,
    seed: int,
    augment: bool,
    cache: bool = True,
    **settings,
) -> dict:
    """`tunelab.runs.loop` with the same settings (and any other TrainConfig `settings`, e.g.
    length_grouping=True); seconds per epoch from its metrics.jsonl."""
    with PeakMemory() as memory, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        started = time.perf_counter()
        config = TrainConfig(
            model=model_name,
            strategy=strategy,
            data=str(data),
            val_data=None if val_data is None else str(val_data),
            out=str(Path(tmp) / "run"),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            augment=augment,
            cache=cache,
            **settings,
        )
        summary = train(config)
        total = time.perf_counter() - started
        metrics = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    epoch_s = (summary["cache_seconds"] + sum(m["seconds"] for m in metrics)) / len(
        metrics
    )  # the cache pass, shared out
    return {
        "epoch_s": epoch_s,
        "total_s": total,
        "accuracy": summary["score"],
        "peak_mb": memory.mb,
        "cache_s": summary["cache_seconds"],
    }
