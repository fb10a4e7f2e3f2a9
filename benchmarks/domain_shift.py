"""Domain shift: source-only against `--adapt adabn` and `--adapt dann`, on UCI digits -> "digits-M".

The pair. The source domain is scikit-learn's copy of the UCI 8x8 handwritten digits (1,797 images, 10 classes,
white strokes on black), upscaled to 32x32. The target domain is the same kind of digit made the way Ganin &
Lempitsky made MNIST-M from MNIST for the DANN paper (ICML 2015, section 5): each pixel is the absolute
difference between the digit and a random 32x32 patch of a colour photograph. MNIST-M took its patches from
BSDS500; here they come from the two photographs scikit-learn ships (`load_sample_images`: china.jpg,
flower.jpg), so nothing is downloaded. It is a synthetic shift, stated as such: strokes, classes and
resolution are the source's; colour, texture and contrast are not. The digits are split once (seed 0,
stratified): 60% are source images (`--data`; tunelab holds its own validation split out of them), the rest
are turned into target images, half of them unlabelled (`--target-data`), half the labelled target test set
(`--test-data`). No digit appears in two roles.

Each method trains with the same command but for its --adapt flags, seed by seed; the table gives the
target test accuracy (mean ± sample std over seeds), the source validation accuracy that chose the epoch, and
whether the gain over source-only is larger than the seed spread (the larger of the two methods' stds).

    python benchmarks/domain_shift.py                           # tiny-cnn, 2 seeds (writes results/domain_shift.md)
    python benchmarks/domain_shift.py --models tiny-cnn,mobilenet_v2   # also ImageNet MobileNetV2 at 64 px
    python benchmarks/domain_shift.py --quick                   # a smoke run: 1 seed, 1 epoch, 200 digits

The recorded table took about 35 minutes (tiny-cnn runs of 4-7 minutes each, on 2 cores shared with other
work); MobileNetV2 at 64 px costs several times that per run and was not measured.

Needs scikit-learn (the `bench` extra: pip install 'tunelab[bench]'). Times depend on the machine's load: the
machine these numbers come from is shared, so read the scores, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
METHODS = {"source-only": [], "adabn": ["--adapt", "adabn"], "dann": ["--adapt", "dann"]}
"""The flags each method adds to the same `tunelab train` command (the target data is added for adabn, dann)."""
MODELS = {"tiny-cnn": ["--image-size", "32", "--lr", "3e-3"], "mobilenet_v2": ["--image-size", "64"]}
"""Models measured, with their own flags: tiny-cnn (random weights) at its 32 px, ImageNet MobileNetV2 at 64 px."""
SIDE = 32
"""Side of the written images (the 8x8 digits upscaled), and of the photo patches."""


def digits_pair(folder: Path, quick: bool) -> dict[str, Path]:
    """Write source/, target-unlabelled/, target-test/ image trees under `folder`; returns their paths."""
    from sklearn.datasets import load_digits, load_sample_images
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target
    index = np.arange(len(labels))
    if quick:
        index = train_test_split(index, train_size=200, stratify=labels, random_state=0)[0]
    source, target = train_test_split(index, train_size=0.6, stratify=labels[index], random_state=0)
    unlabelled, test = train_test_split(target, train_size=0.5, stratify=labels[target], random_state=0)
    photos = [np.asarray(p, dtype=np.float32) for p in load_sample_images().images]
    rng = np.random.default_rng(0)
    paths = {}
    for name, chosen, shifted in (
        ("source", source, False),
        ("target-unlabelled", unlabelled, True),
        ("target-test", test, True),
    ):
        root = folder / name
        for i in chosen:
            digit = np.asarray(Image.fromarray((images[i] * 255).astype(np.uint8)).resize((SIDE, SIDE), Image.BILINEAR))
            pixels = np.repeat(digit[..., None].astype(np.float32), 3, axis=2)
            if shifted:  # MNIST-M's recipe: |photo patch - digit|, per channel
                photo = photos[rng.integers(len(photos))]
                y, x = rng.integers(photo.shape[0] - SIDE), rng.integers(photo.shape[1] - SIDE)
                pixels = np.abs(photo[y : y + SIDE, x : x + SIDE] - pixels)
            out = root / str(labels[i]) / f"{i:04d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(out)
        paths[name] = root
    return paths


def run(model: str, method: str, seed: int, data: dict[str, Path], out: Path, epochs: int) -> dict:
    """One `tunelab train` process; returns its summary."""
    command = [sys.executable, "-m", "tunelab", "train", "--model", model, "--strategy", "full"]
    command += ["--data", str(data["source"]), "--test-data", str(data["target-test"]), "--no-augment"]
    command += ["--epochs", str(epochs), "--batch-size", "32", "--seed", str(seed), "--out", str(out)]
    command += MODELS[model] + METHODS[method]
    if METHODS[method]:
        command += ["--target-data", str(data["target-unlabelled"])]
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise RuntimeError(f"{model} {method} seed {seed} failed")
    summary = json.loads((out / "summary.json").read_text())
    print(
        f"  {model} {method} seed {seed}: target test {summary['score']:.3f}, source val {summary['val_score']:.3f} "
        f"({time.perf_counter() - started:.0f}s)",
        flush=True,
    )
    return summary


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(results: dict, seeds: int, epochs: int, counts: dict[str, int], load: tuple[float, float]) -> str:
    lines = [
        "| Model | Method | Target test accuracy | Source val accuracy | Gain vs source-only | Gain > seed spread? |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for model, by_method in results.items():
        base_mean, base_std = mean_std([s["score"] for s in by_method["source-only"]])
        for method, summaries in by_method.items():
            mean, std = mean_std([s["score"] for s in summaries])
            val_mean, val_std = mean_std([s["val_score"] for s in summaries])
            if method == "source-only":
                gain, verdict = "—", "—"
            else:
                spread = max(std, base_std)
                gain = f"{mean - base_mean:+.3f}"
                verdict = "yes" if abs(mean - base_mean) > spread and seeds > 1 else "no"
            lines.append(
                f"| {model} | {method} | {mean:.3f} ± {std:.3f} | {val_mean:.3f} ± {val_std:.3f} | {gain} | {verdict} |"
            )
    return "\n".join(
        [
            f"UCI digits (source, {counts['source']} images, white on black) -> digits-M (target: MNIST-M's recipe with "
            f"scikit-learn's two sample photos; {counts['target-unlabelled']} unlabelled for adaptation, "
            f"{counts['target-test']} labelled for the test). Strategy full, {epochs} epochs, batch 32, no augmentation, "
            f"{seeds} seeds (mean ± sample std). The epoch is chosen on the source validation split; the target test "
            "set scores it once (10 classes: chance 0.10). Gain > seed spread: |gain| larger than the larger of the two "
            "methods' seed stds; with 2 seeds a rough guide, not a test.",
            "",
            *lines,
            "",
            f"Measured on a shared machine ({os.cpu_count()} cores, 1-minute load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end): the scores are what the runs measured; times are not reported.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 200 digits; no results file")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--models", default="tiny-cnn", help=f"comma-separated, from {', '.join(MODELS)}")
    args = parser.parse_args()
    seeds, epochs = (1, 1) if args.quick else (args.seeds, args.epochs)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="domain-shift-") as tmp:
        data = digits_pair(Path(tmp) / "data", args.quick)
        counts = {name: len(list(path.glob("*/*.png"))) for name, path in data.items()}
        print(f"data: {counts}", flush=True)
        results: dict = {}
        for model in args.models.split(","):
            results[model] = {method: [] for method in METHODS}
            for seed in range(seeds):
                for method in METHODS:
                    out = Path(tmp) / "runs" / model / method / f"s{seed}"
                    results[model][method].append(run(model, method, seed, data, out, epochs))
    text = table(results, seeds, epochs, counts, (load_before, os.getloadavg()[0]))
    print(text)
    if not args.quick:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "domain_shift.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
