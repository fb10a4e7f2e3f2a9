"""Develop your own source model, then transfer it: Fashion-MNIST -> handwritten digits, against ImageNet.

1. Source: `tiny-cnn` (a 5-block MobileNetV2, 68k parameters, 32 px input) trained from scratch on a
   balanced subset of Fashion-MNIST (Debian package `dataset-fashion-mnist`): 600 of the 6,000 training
   images per class, so an epoch costs a tenth of the full set's. The finished run directory is the source model.
2. Target: `examples/digits_small` (20 training images per digit, 30 held out per digit; 8x8 scans).
3. `compare` on the target, every run with the same epochs and evaluation, no augmentation:
   - the source run as `--model`: `scratch` (its architecture, random weights) and `none` (linear probe);
   - ImageNet MobileNetV2 (`mobilenet_v2`, 2.2M parameters, 224 px): `none` (linear probe).
   `--strategies none,full` adds fine-tuning to both transfers (it did not fit the compute we had).
4. One table and one learning-curve plot over both comparisons (a comparison report holds one model).

Run from the repository root: `python examples/own_source_model.py` (see the README section for the time it took).
Outputs go to runs/own-source/; the README section "Develop your own source model" shows the results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tunelab.comparison.grid import CompareConfig, compare
from tunelab.comparison.results import aggregate, collect
from tunelab.data.idx import find_idx_pair, read_idx, write_idx
from tunelab.runs.loop import train
from tunelab.runs.rundir import RunDir
from tunelab.settings import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TARGET = ROOT / "examples" / "digits_small"
OUT = ROOT / "runs" / "own-source"


def fashion_subset(out: Path, train_per_class: int, test_per_class: int) -> Path:
    """The first N images of each class from Fashion-MNIST's train and t10k files, as idx files in `out`."""
    if not FASHION_MNIST.is_dir():
        sys.exit(f"{FASHION_MNIST} not found: apt-get install dataset-fashion-mnist")
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        examples = read_idx(*find_idx_pair(FASHION_MNIST, prefix))
        labels = np.array(examples.labels)
        rows = sorted(i for c in range(10) for i in np.flatnonzero(labels == c)[:per_class])
        write_idx(out, prefix, np.stack([examples.inputs[i] for i in rows]), labels[rows])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-per-class", type=int, default=600, help="Fashion-MNIST training images per class")
    parser.add_argument("--source-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every run on the target")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per strategy (runs already done are skipped)")
    parser.add_argument(
        "--strategies", default="none", help="transfer strategies for both sources (scratch is always run)"
    )
    args = parser.parse_args()

    source = OUT / "source"
    if not RunDir(source).complete:
        data = fashion_subset(OUT / "fashion-mnist-subset", args.source_per_class, 100)
        train(
            TrainConfig(
                model="tiny-cnn",
                strategy="scratch",
                data=str(data),
                out=str(source),
                epochs=args.source_epochs,
                batch_size=64,
                augment=False,
                resume=(source / "checkpoint" / "latest").is_file(),
            )
        )

    strategies = tuple(args.strategies.split(","))
    common = dict(data=str(TARGET), epochs=args.epochs, seeds=args.seeds, batch_size=16, augment=False)
    arms = {
        "self-made source (Fashion-MNIST)": compare(
            CompareConfig(
                model=str(source), out=str(OUT / "from-source"), strategies=("scratch", *strategies), **common
            )
        ),
        "ImageNet MobileNetV2": compare(
            CompareConfig(model="mobilenet_v2", out=str(OUT / "from-imagenet"), strategies=strategies, **common)
        ),
    }
    rows = []
    for label, report in arms.items():
        for r in aggregate(collect([report.parent / "runs"])):
            origin = "none (random init)" if r.strategy == "scratch" else label
            rows.append((origin, r))
    print(markdown_table(rows))
    plot(rows, OUT / "curves.png")
    print(f"\ncurves: {OUT / 'curves.png'}; reports: " + ", ".join(str(p) for p in arms.values()))


def markdown_table(rows) -> str:
    lines = [
        "| pretrained on | strategy | val accuracy (mean ± std) | trainable params | train time per run |",
        "|---|---|---|---|---|",
    ]
    for origin, r in rows:
        lines.append(
            f"| {origin} | `{r.strategy}` | {r.score_mean:.3f} ± {r.score_std:.3f} | {r.trainable_params:,} | "
            f"{r.train_seconds_mean:.0f} s |"
        )
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for origin, r in rows:
        epochs = np.arange(1, len(r.curve_mean) + 1)
        mean, std = np.array(r.curve_mean), np.array(r.curve_std)
        (line,) = ax.plot(epochs, mean, marker="o", ms=3, label=f"{r.strategy} ({origin})")
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="digits_small (200 train / 300 val images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
