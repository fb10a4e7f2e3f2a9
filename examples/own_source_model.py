"""Develop your own source model, then transfer it: one half of Fashion-MNIST to the other, against ImageNet.

The seed approach "develop a source model" is: pick a related source task with plenty of data, train a model
on it until it is skilful (clearly better than a naive model, so it learned features), reuse it on the small
target task, and tune it there. This script does that and measures what it buys, in one command.

Why a class split of Fashion-MNIST (Debian package `dataset-fashion-mnist`): source and target share the
imaging (28x28 grey product photos, centred, same lighting) but not a single class, the classic set-up for
measuring transfer (Yosinski et al., NeurIPS 2014, split ImageNet in two the same way). The source has
thousands of images per class; the target has a few dozen, where training from scratch is weak. Which
classes go where decides whether the tasks are related: each task gets tops, a long garment and footwear,
so every target class but Bag has a cousin in the source (Pullover and Shirt: T-shirt/top and Coat; Trouser:
Dress; Ankle boot: Sandal and Sneaker). The plain split 0-4 / 5-9 puts all footwear and the bag in the target
alone; there the source features transferred worse than training from scratch (README, worked example).

1. Data (idx files under <out>/data, labels renumbered 0-4 in each task, rows taken in file order):
   - source: classes T-shirt/top, Dress, Coat, Sandal, Sneaker; `--source-per-class` training images each;
     200 per class of the official test file pick the best epoch, 800 others per class score it;
   - target: classes Trouser, Pullover, Shirt, Bag, Ankle boot; `--target-per-class` training and 100
     validation images per class from the training file, all 1,000 per class of the test file as test set.
2. Source model: `tiny-cnn` (a 5-block MobileNetV2, 61k parameters, 32 px) trained with `scratch`, no
   augmentation; its test score is set against two naive models on the same images: the majority class, and
   a logistic regression on the raw pixels (scikit-learn).
3. Transfer: `tunelab compare` on the target, every run with the same epochs, batch size, learning rate
   (1e-3, for every weight: `full:lr_mult=1` and `lpft:lr_mult=1` give the backbone the head's rate, so a
   transfer run differs from `scratch` in its starting weights only) and no augmentation, `--seeds` seeds
   each, the best epoch picked on validation and scored once on test:
   - the source run as `--model`: `scratch` (its architecture, random weights), `none` (linear probe),
     `full:lr_mult=1` (fine-tune everything) and `lpft:lr_mult=1` (probe the head 10 epochs, then fine-tune);
   - ImageNet MobileNetV2 (`mobilenet_v2`, 2.2M parameters) at `--image-size` px: the same three.
   A second `scratch` at lr 3e-3 shows how much of a gain over scratch is scratch's learning rate.
4. The three benefits of transfer (Torrey & Shavlik) per run, against scratch, paired by seed:
   start (validation accuracy after epoch 1) and slope (mean gain per epoch over epochs 1-3), both by
   `tunelab.comparison.results.benefits`; area, the mean validation accuracy over all epochs (a slope that
   also sees the later epochs); and asymptote: the test accuracy of the run's best epoch. A gain
   counts when its paired 95% t-interval over the seeds excludes 0 (`tunelab.comparison.paired`).

Every run uses one CPU thread (on a busy machine torch's threads otherwise wait on each other), and the
ImageNet comparison trains in the background while the source model, its baselines and the source
comparison run in the foreground: two cores, two processes. Every step skips what is done, so running the
script again after an interruption resumes it. Run from the repository root:
`python examples/own_source_model.py`. Outputs: <out>/results.md, <out>/curves.png, the two compare
reports (<out>/from-source/report.html, <out>/from-imagenet/report.html) and the logs of the background steps.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tunelab import CompareConfig, TrainConfig, compare
from tunelab.comparison.executor import child_environment, train_command
from tunelab.comparison.paired import ABOVE, BELOW, paired
from tunelab.comparison.results import RunRecord, benefits, collect, strategy_order
from tunelab.data.idx import find_idx_pair, read_idx, write_idx
from tunelab.runs.rundir import RunDir
from tunelab.settings.fields import to_argv

ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
SOURCE_CLASSES = (0, 3, 4, 5, 7)  # T-shirt/top, Dress, Coat, Sandal, Sneaker
TARGET_CLASSES = (1, 2, 6, 8, 9)  # Trouser, Pullover, Shirt, Bag, Ankle boot
SOURCE_VAL, SOURCE_TEST = 200, 800  # per class, from the official test file (1,000 per class)
TARGET_VAL = 100  # per class, from the training file after the target's training images
SELF_MADE, IMAGENET = "own source (Fashion-MNIST, other classes)", "ImageNet"
LR = 1e-3
"""Learning rate of every target run, for every weight it trains (AdamW, cosine schedule, tunelab's defaults)."""
SCRATCH_LR = 3e-3
"""A second scratch baseline at a higher rate: how much of a gain over scratch is scratch's learning rate."""
TRANSFERS = ("none", "full:lr_mult=1", "lpft:lr_mult=1")
"""The transfer strategies of both origins; lr_mult=1: the backbone at scratch's learning rate."""


@dataclass(frozen=True)
class Plan:
    """The sizes of one end-to-end run: a finished <out> holds runs of exactly these, so they are saved there."""

    source_per_class: int
    source_epochs: int
    source_lr: float
    target_per_class: int
    epochs: int
    seeds: int
    batch_size: int
    image_size: int


@dataclass(frozen=True)
class Paths:
    """The four idx data folders, each read by tunelab as train (+ t10k as validation) or as a test set."""

    source: Path
    source_test: Path
    target: Path
    target_test: Path


# ---------------------------------------------------------------- data


def per_class_rows(labels: np.ndarray, classes: tuple[int, ...], start: int, count: int) -> np.ndarray:
    """Rows [start, start + count) of each class, in file order: the same rows on every machine."""
    rows = [np.flatnonzero(labels == c)[start : start + count] for c in classes]
    if any(len(r) < count for r in rows):
        sys.exit(f"Fashion-MNIST has fewer than {start + count} images of a class in this file")
    return np.sort(np.concatenate(rows))


def write_task(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, classes: tuple[int, ...]
) -> None:
    """Write the chosen rows as an idx pair, labels renumbered 0..k-1 in the order of `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    write_idx(folder, prefix, images[rows], [index[int(v)] for v in labels[rows]])


def build_data(out: Path, plan: Plan) -> Paths:
    """Split Fashion-MNIST by class into the source and target tasks (about a second; skipped when done)."""
    paths = Paths(out / "source", out / "source-test", out / "target", out / "target-test")
    if (out / "done").is_file():
        return paths
    if not FASHION_MNIST.is_dir():
        sys.exit(f"{FASHION_MNIST} not found: apt-get install dataset-fashion-mnist")
    train = read_idx(*find_idx_pair(FASHION_MNIST, "train"))
    test = read_idx(*find_idx_pair(FASHION_MNIST, "t10k"))
    x, y = np.stack(train.inputs), np.array(train.labels)
    xt, yt = np.stack(test.inputs), np.array(test.labels)
    s, t, n = SOURCE_CLASSES, TARGET_CLASSES, plan.target_per_class
    write_task(paths.source, "train", x, y, per_class_rows(y, s, 0, plan.source_per_class), s)
    write_task(paths.source, "t10k", xt, yt, per_class_rows(yt, s, 0, SOURCE_VAL), s)  # t10k: validation
    write_task(paths.source_test, "t10k", xt, yt, per_class_rows(yt, s, SOURCE_VAL, SOURCE_TEST), s)
    write_task(paths.target, "train", x, y, per_class_rows(y, t, 0, n), t)
    write_task(paths.target, "t10k", x, y, per_class_rows(y, t, n, TARGET_VAL), t)
    write_task(paths.target_test, "t10k", xt, yt, per_class_rows(yt, t, 0, 1000), t)
    (out / "done").write_text("")
    return paths


def check_plan(out: Path, plan: Plan) -> None:
    """Refuse to mix sizes: runs in <out> made with other sizes would be reused as if they were these."""
    saved = out / "plan.json"
    if saved.is_file() and json.loads(saved.read_text()) != asdict(plan):
        sys.exit(f"{out} holds runs made with other sizes ({saved}): give another --out, or remove it")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(asdict(plan), indent=2) + "\n")


# ---------------------------------------------------------------- the source model and its naive baselines


def source_config(paths: Paths, plan: Plan, out: Path) -> TrainConfig:
    """The source run: tiny-cnn from random weights on the source task, scored once on its test set."""
    return TrainConfig(
        model="tiny-cnn",
        strategy="scratch",
        data=str(paths.source),
        test_data=str(paths.source_test),
        out=str(out),
        epochs=plan.source_epochs,
        lr=plan.source_lr,
        batch_size=64,
        augment=False,
        resume=(out / "checkpoint" / "latest").is_file(),
    )


def train_source(config: TrainConfig, log: Path) -> None:
    """Train (or finish) the source model in a child process with one thread; its output goes to `log`."""
    if RunDir(Path(config.out)).complete:
        return
    print(f"training the source model ({config.epochs} epochs); log: {log}", file=sys.stderr)
    with log.open("a") as sink:
        done = subprocess.run(
            train_command(config), env=child_environment(threads=1), stdout=sink, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        sys.exit(f"the source run failed (exit code {done.returncode}); see {log}")


def naive_baselines(paths: Paths, out: Path) -> dict[str, float]:
    """Source test accuracy of the majority class and of a logistic regression on raw pixels (saved once)."""
    saved = out / "naive-baselines.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits  # one BLAS thread, as every run here has one torch thread

    train = read_idx(*find_idx_pair(paths.source, "train"))
    test = read_idx(*find_idx_pair(paths.source_test, "t10k"))
    x, y = np.stack(train.inputs).reshape(len(train.labels), -1) / 255.0, np.array(train.labels)
    xt, yt = np.stack(test.inputs).reshape(len(test.labels), -1) / 255.0, np.array(test.labels)
    majority = int(np.bincount(y).argmax())
    with threadpool_limits(1):
        model = LogisticRegression(max_iter=1000).fit(x, y)
    scores = {"majority class": float(np.mean(yt == majority)), "logistic regression on pixels": model.score(xt, yt)}
    saved.write_text(json.dumps(scores, indent=2) + "\n")
    return scores


# ---------------------------------------------------------------- the transfer comparisons


def compare_config(model: str, paths: Paths, plan: Plan, out: Path, lr: float = LR, **extra) -> CompareConfig:
    """One compare on the target: the same epochs, batch, lr and (no) augmentation for every run, one thread."""
    return CompareConfig(
        model=model,
        data=str(paths.target),
        test_data=str(paths.target_test),
        out=str(out),
        epochs=plan.epochs,
        seeds=plan.seeds,
        batch_size=plan.batch_size,
        lr=lr,
        augment=False,
        run_cpus=1,
        **extra,
    )


def start_in_background(config: CompareConfig, log: Path) -> subprocess.Popen:
    """`tunelab compare` with `config`'s settings in a child process (done runs are skipped), output in `log`."""
    print(f"comparing on {config.model} in the background; log: {log}", file=sys.stderr)
    with log.open("a") as sink:
        command = [sys.executable, "-m", "tunelab", "compare", *to_argv(config)]
        return subprocess.Popen(command, env=child_environment(), stdout=sink, stderr=subprocess.STDOUT)


# ---------------------------------------------------------------- the three benefits


@dataclass(frozen=True)
class Arm:
    """One (origin, strategy): its runs, and the three benefits per run, by seed."""

    origin: str
    strategy: str
    runs: tuple[RunRecord, ...]

    def by_seed(self, benefit: str) -> tuple[tuple[int, None, float], ...]:
        """(seed, None, value) of `benefit` (start, slope or test) for each run: what `paired` pairs."""
        return tuple((r.seed, None, run_benefit(r, benefit)) for r in self.runs)

    def values(self, benefit: str) -> list[float]:
        return [v for _, _, v in self.by_seed(benefit)]


BENEFITS = ("start", "slope", "area", "test")
"""Per run: start and slope (tunelab's), area under the validation curve (its mean over the epochs: a slope
that also sees the epochs after the third), and the test score of the best epoch (the asymptote)."""


def run_benefit(run: RunRecord, benefit: str) -> float:
    """One of BENEFITS for one run: start / slope by tunelab's definitions, area, or the test score."""
    if benefit == "test":
        return run.score
    if benefit == "area":
        return statistics.fmean(run.curve)
    start, slope, _ = benefits(run.curve)
    return start if benefit == "start" else (math.nan if slope is None else slope)


def arms(origin: str, report: Path) -> list[Arm]:
    """The arms of one compare report: scratch first, then the transfers in tunelab's strategy order."""
    runs = collect([report.parent / "runs"])
    order = sorted({r.strategy for r in runs}, key=lambda s: (s != "scratch", strategy_order(s)))
    return [Arm(origin, s, tuple(sorted((r for r in runs if r.strategy == s), key=lambda r: r.seed))) for s in order]


def mean_std(values: list[float], digits: int = 3, sign: bool = False) -> str:
    """'0.812 ± 0.010' (sample std over seeds)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{'+' if sign else ''}.{digits}f} ± {spread:.{digits}f}"


def gain(arm: Arm, scratch: Arm, benefit: str) -> str:
    """Mean paired difference to scratch with its 95% interval, and whether the interval excludes 0."""
    p = paired(arm.by_seed(benefit), scratch.by_seed(benefit), scratch.strategy)
    if p.low is None:
        return "n/a" if p.mean is None else f"{p.mean:+.3f} (one seed)"
    mark = " **yes**" if p.verdict == ABOVE else (" **worse**" if p.verdict == BELOW else " no")
    return f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}]{mark}"


def tables(all_arms: list[Arm], scratches: tuple[Arm, Arm], source: dict, naive: dict[str, float]) -> str:
    """The markdown the README shows: source skill, then scores and benefits, then the gains over scratch.

    Gains are against the scratch run at the shared learning rate (same optimiser, other start); the
    asymptote is also set against the faster scratch, the better of the two baselines here.
    """
    scratch, fast = scratches
    epochs = len(scratch.runs[0].curve)
    lines = [
        f"| model of the source task (5 classes, test set of {source['test_examples']:,}) | test accuracy |",
        "|---|---|",
        *(f"| {name} | {score:.3f} |" for name, score in naive.items()),
        f"| `tiny-cnn` trained {source['epochs']} epochs on {source['train_examples']:,} images | "
        f"{source['score']:.3f} |",
        "",
        "| pretrained on | strategy | start: val acc after epoch 1 | slope: gain per epoch, epochs 1-3 | "
        f"area: mean val acc, epochs 1-{epochs} | asymptote: test acc | trainable params | time per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in all_arms:
        lines.append(
            f"| {a.origin} | `{a.strategy}` | {mean_std(a.values('start'))} | "
            f"{mean_std(a.values('slope'), sign=True)} | {mean_std(a.values('area'))} | "
            f"{mean_std(a.values('test'))} | {a.runs[0].trainable_params:,} | "
            f"{statistics.fmean(r.train_seconds for r in a.runs):.0f} s |"
        )
    lines += [
        "",
        "| pretrained on | strategy | Δ start | Δ slope | Δ area | Δ asymptote (test) | "
        f"Δ asymptote vs {fast.origin} |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in all_arms:
        if a.strategy != "scratch":
            cells = [gain(a, scratch, b) for b in BENEFITS] + [gain(a, fast, "test")]
            lines.append(f"| {a.origin} | `{a.strategy}` | {' | '.join(cells)} |")
    lines.append(
        f"\nmean ± sample std over {len(scratch.runs)} seeds. Δ: against scratch at lr {LR:g} unless named, the "
        "mean paired difference (same seed) with its 95% t-interval; **yes** when the interval lies above 0, "
        "**worse** when below, no when it includes 0."
    )
    return "\n".join(lines)


COLOURS = {"scratch": "0.35", "none": "tab:blue", "full": "tab:red", "lpft": "tab:green"}
"""Line colour per strategy key; the origin sets the line style (own source solid, ImageNet dashed)."""


def plot(all_arms: list[Arm], path: Path, title: str) -> None:
    """Validation accuracy per epoch, mean over seeds with a ±1 std band: colour = strategy, style = origin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.4))
    for a in all_arms:
        curves = np.array([r.curve for r in a.runs])
        mean = curves.mean(axis=0)
        std = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
        epochs = np.arange(1, len(mean) + 1)
        style = "--" if a.origin == IMAGENET else (":" if a.origin.endswith(f"{SCRATCH_LR:g}") else "-")
        colour = COLOURS.get(a.strategy.split(":")[0], "black")
        label = f"{a.strategy} ({a.origin.split(' (')[0]})"
        ax.plot(epochs, mean, style, color=colour, marker="o", ms=3, label=label)
        ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.12)
    ax.set(xlabel="epoch", ylabel="validation accuracy (target)", title=title)
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- the whole example


def parse_plan() -> tuple[Plan, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-per-class", type=int, default=2000, help="source training images per class")
    parser.add_argument("--source-epochs", type=int, default=6)
    parser.add_argument("--source-lr", type=float, default=3e-3)
    parser.add_argument("--target-per-class", type=int, default=30, help="target training images per class")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of every run on the target")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per strategy")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of every run on the target")
    parser.add_argument("--image-size", type=int, default=64, help="MobileNetV2's input side in px")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "own-source")
    args = parser.parse_args()
    out = args.out
    del args.out
    return Plan(**vars(args)), out


def main() -> None:
    started = time.monotonic()
    plan, out = parse_plan()
    check_plan(out, plan)
    paths = build_data(out / "data", plan)

    imagenet = compare_config("mobilenet_v2", paths, plan, out / "from-imagenet", strategies=TRANSFERS,
                              image_size=plan.image_size)  # fmt: skip
    background = start_in_background(imagenet, out / "from-imagenet.log")
    try:
        source = out / "source"
        train_source(source_config(paths, plan, source), out / "source.log")
        naive = naive_baselines(paths, out)
        strategies = ("scratch", *TRANSFERS)
        own = compare(compare_config(str(source), paths, plan, out / "from-source", strategies=strategies))
        faster = compare_config(str(source), paths, plan, out / "scratch-fast", SCRATCH_LR, strategies=("scratch",))
        fast = compare(faster)
        print("waiting for the ImageNet comparison", file=sys.stderr)
        if background.wait() != 0:
            sys.exit(f"the ImageNet comparison failed; see {out / 'from-imagenet.log'}")
    finally:
        if background.poll() is None:  # this process is stopping early: so does the background comparison
            background.terminate()  # it passes the signal on to its run, which keeps its last epoch
            background.wait()

    scratch, *transfers = arms(SELF_MADE, own.report)
    scratch = replace(scratch, origin=f"random init, lr {LR:g}")
    (fast_scratch,) = arms(f"random init, lr {SCRATCH_LR:g}", fast.report)
    all_arms = [scratch, fast_scratch, *transfers, *arms(IMAGENET, out / "from-imagenet" / "report.html")]
    summary = json.loads((source / "summary.json").read_text())
    text = tables(all_arms, (scratch, fast_scratch), summary, naive)
    (out / "results.md").write_text(text + "\n")
    n = plan.target_per_class
    plot(all_arms, out / "curves.png", f"target: 5 Fashion-MNIST classes, {5 * n} training images, {plan.seeds} seeds")
    print(text)
    print(f"\nresults: {out / 'results.md'}; curves: {out / 'curves.png'}; reports: {own.report}, "
          f"{out / 'from-imagenet' / 'report.html'}")  # fmt: skip
    print(f"end to end: {(time.monotonic() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
