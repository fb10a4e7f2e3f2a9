"""The two strategy comparisons the README quotes, re-run with a held-out test set (`make compare-tables`).

- MobileNetV2 on hymenoptera: 245 training images (a fifth held out for validation, which picks the best
  epoch), scored on the 153 images of `val/` used as the test set; six strategies, 5 epochs, 3 seeds.
- MiniLM-L6 on SST-2: 2000 training and 500 validation sentences drawn (seed 0) from `train.tsv`, scored on the
  872 sentences of `dev.tsv` as the test set; six strategies, 2 epochs, 3 seeds.

Each comparison is an ordinary `tunelab compare` (every run its own process, one augmentation policy for all);
its `results.md` is printed and kept under `--out`. Re-running skips finished runs.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def sst2_subset(folder: Path, train_rows: int, val_rows: int, seed: int = 0) -> tuple[Path, Path]:
    """Disjoint training and validation tables drawn from SST-2's train.tsv (the header kept)."""
    header, *rows = (DATASETS / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(rows)
    folder.mkdir(parents=True, exist_ok=True)
    train, val = folder / "train.tsv", folder / "val.tsv"
    train.write_text("\n".join([header, *rows[:train_rows]]) + "\n", encoding="utf-8")
    val.write_text("\n".join([header, *rows[train_rows : train_rows + val_rows]]) + "\n", encoding="utf-8")
    return train, val


def compare(args: list[str]) -> None:
    command = [sys.executable, "-m", "tunelab", "compare", *args]
    print("$ tunelab compare " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-compare", help="where the comparisons and data subsets go")
    parser.add_argument("--only", choices=("hymenoptera", "sst2"), help="run one of the two")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default: 3)")
    args = parser.parse_args()
    out = Path(args.out)
    seeds = ["--seeds", str(args.seeds)]
    if args.only in (None, "hymenoptera"):
        compare(
            ["--model", "mobilenet_v2", "--data", str(DATASETS / "hymenoptera" / "train"),
             "--test-data", str(DATASETS / "hymenoptera" / "val"),
             "--strategies", "none,full,retrain:4,adapter,lora,scratch", "--epochs", "5", *seeds,
             "--out", str(out / "hymenoptera")]
        )  # fmt: skip
    if args.only in (None, "sst2"):
        train, val = sst2_subset(out / "sst2-data", 2000, 500)
        compare(
            ["--model", "minilm-l6", "--data", str(train), "--val-data", str(val),
             "--test-data", str(DATASETS / "sst2" / "dev.tsv"),
             "--strategies", "none,full,retrain:3,adapter,lora,scratch", "--epochs", "2", *seeds,
             "--out", str(out / "sst2")]
        )  # fmt: skip


if __name__ == "__main__":
    main()
