"""None-Tune on hymenoptera, 10 epochs: tunelab with the feature cache, tunelab --no-cache, and a plain loop.

The plain loop is written the way the torchvision transfer-learning tutorial writes its fixed feature
extractor ("ConvNet as fixed feature extractor"): backbone frozen, new classifier, the frozen backbone
recomputed on every batch of every epoch, SGD(lr=1e-3, momentum=0.9) with StepLR(7, 0.1), train-time
RandomResizedCrop + flip. Same model weights, data, batch size, epochs and thread count on every side.

Run: .venv/bin/python benchmarks/none_tune_cache.py [--data ../shared/datasets/hymenoptera] [--epochs 10] [--quick]
Writes benchmarks/results/none_tune_cache.md and the table between the markers in benchmarks/README.md
(--quick: 8 training images, 2 epochs, table printed only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench_common import DATASETS, image_subset, load_note, machine, write_table
from tunelab import load_backbone
from tunelab.data import ImageDataset, image_transform, load_images
from tunelab.runs.loop import train
from tunelab.settings import TrainConfig


def plain_tutorial_loop(data: Path, epochs: int, batch_size: int, seed: int) -> tuple[float, float]:
    """The tutorial's fixed-feature-extractor loop; returns (seconds, best val accuracy)."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    backbone = load_backbone("mobilenet_v2")
    model = backbone.model.to(memory_format=torch.contiguous_format)  # the layout a torchvision model has as loaded
    for p in model.parameters():
        p.requires_grad = False
    model.head[-1] = torch.nn.Linear(backbone.num_features, 2)  # new layers have requires_grad=True
    splits = load_images(data)
    train_loader = DataLoader(
        ImageDataset(splits.train, image_transform(backbone.input, train=True)), batch_size, shuffle=True
    )
    val_loader = DataLoader(ImageDataset(splits.val, image_transform(backbone.input, train=False)), batch_size)
    optimizer = torch.optim.SGD(model.head[-1].parameters(), lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    best = 0.0
    for _ in range(epochs):
        model.train()  # as in the tutorial: BatchNorm statistics of the frozen backbone keep moving
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
        best = max(best, correct / len(splits.val))
    return time.perf_counter() - started, best


def tunelab_run(data: Path, epochs: int, batch_size: int, seed: int, cache: bool, out: Path) -> tuple[float, float]:
    started = time.perf_counter()
    summary = train(
        TrainConfig(
            model="mobilenet_v2",
            strategy="none",
            data=str(data),
            out=str(out),
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            cache=cache,
        )
    )
    return time.perf_counter() - started, summary["score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATASETS / "hymenoptera"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="8 training images, 2 epochs, README untouched")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    data = image_subset(tmp / "hymenoptera", 4, 2) if args.quick else Path(args.data)
    args.epochs = 2 if args.quick else args.epochs
    rows, load_before = [], os.getloadavg()[0]
    try:
        for name, run in [
            (
                "tunelab none (feature cache)",
                lambda: tunelab_run(data, args.epochs, args.batch_size, args.seed, True, tmp / "cache"),
            ),
            (
                "tunelab none --no-cache",
                lambda: tunelab_run(data, args.epochs, args.batch_size, args.seed, False, tmp / "nocache"),
            ),
            (
                "plain loop (torchvision tutorial style)",
                lambda: plain_tutorial_loop(data, args.epochs, args.batch_size, args.seed),
            ),
        ]:
            seconds, acc = run()
            rows.append((name, seconds, acc))
            print(f"{name}: {seconds:.1f}s, best val accuracy {acc:.4f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plain = rows[-1][1]
    table = [
        f"MobileNetV2 `none` on hymenoptera ({data.name}), {args.epochs} epochs, batch {args.batch_size}, "
        f"seed {args.seed}, one repetition each. Machine: {machine(args.threads)}; {load_note(load_before, os.getloadavg()[0])}.",
        "",
        "| variant | total wall time (s) | speed-up vs plain loop | best val accuracy |",
        "|---|---:|---:|---:|",
        *(f"| {n} | {s:.1f} | {plain / s:.1f}x | {a:.4f} |" for n, s, a in rows),
    ]
    write_table("none_tune_cache", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
