"""Comparison results: collect finished runs and aggregate them per (data fraction, strategy): the numbers.

Runs are read from run directories alone (config.yaml, metrics.jsonl, summary.json), so a report can be
redone after the fact, from any subset of runs, without retraining. This module owns the dataclasses and
the arithmetic; plots.py draws them, html.py writes them as text and report.py writes the report files.

Aggregation rules, so two reports built from the same runs always agree:
- runs are grouped by (train_fraction, strategy spec); seeds and folds of a group are repetitions;
- std is the sample standard deviation (n-1), 0 for a single run;
- `best` is the highest mean score at a fraction (ties: less training time);
- `cheapest_near_best` is, among strategies whose mean is at least best mean - best std ("within noise of
  the best"), the one with the least mean wall-clock training time (ties: fewer trainable parameters).
  With one run per strategy the std is 0, so only ties with the best count as "within noise".

May import: runs (the run directory), strategies (registry order), settings, fileio, errors.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.fileio import load_json
from tunelab.runs.rundir import FORMAT_VERSION, RunDir
from tunelab.settings import TrainConfig, from_yaml_file
from tunelab.strategies import REGISTRY

SCRATCH = "scratch"
"""Strategy key of the no-transfer baseline that the three benefits are measured against."""


@dataclass(frozen=True)
class RunRecord:
    """One finished run, reduced to what a comparison needs."""

    path: Path
    """The run directory."""
    model: str
    """Model name as given to the run."""
    data: str
    """Training data path as given to the run."""
    strategy: str
    """Strategy spec, as the run wrote it in summary.json (canonical, e.g. 'retrain:3')."""
    seed: int
    """Random seed of the run."""
    fold: int | None
    """Validation fold under K-fold cross-validation; None without folds."""
    train_fraction: float
    """Fraction of the training split the run trained on."""
    train_examples: int
    """Training examples actually used."""
    val_examples: int
    """Validation examples the score was measured on."""
    metric: str
    """Name of the validation metric ('accuracy'); the curve holds val_<metric> per epoch."""
    score: float
    """Best validation metric over the epochs."""
    trainable_params: int
    """Parameters the strategy trained."""
    total_params: int
    """All parameters of the model."""
    train_seconds: float
    """Wall-clock time of the whole run, caching and evaluation included."""
    seconds_per_epoch: float
    """Mean wall-clock seconds per epoch, from metrics.jsonl."""
    peak_memory_mb: float
    """Peak GPU memory (or CPU resident memory) of the run."""
    checkpoint_bytes: int
    """Size of model.safetensors: what the strategy needs to store per task."""
    curve: tuple[float, ...]
    """Validation metric after each epoch."""


@dataclass(frozen=True)
class StrategyResult:
    """All runs of one strategy at one training-set fraction, aggregated."""

    strategy: str
    """Strategy spec."""
    train_fraction: float
    """Fraction of the training split."""
    train_examples: float
    """Mean number of training examples (folds can differ by one)."""
    n_runs: int
    """Runs aggregated (seeds x folds)."""
    metric: str
    """Name of the validation metric."""
    score_mean: float
    """Mean over runs of each run's best validation metric."""
    score_std: float
    """Sample standard deviation of the scores; 0 for one run."""
    trainable_params: int
    """Trainable parameters (the same in every run of a strategy)."""
    total_params: int
    """All parameters of the model."""
    trainable_percent: float
    """Trainable parameters as a percentage of all parameters."""
    train_seconds_mean: float
    """Mean wall-clock training time per run: what 'cheap' means in this report."""
    seconds_per_epoch_mean: float
    """Mean wall-clock seconds per epoch."""
    peak_memory_mb_max: float
    """Largest peak memory of any run: what a machine must have."""
    checkpoint_bytes_mean: float
    """Mean checkpoint size in bytes."""
    curve_mean: tuple[float, ...]
    """Element-wise mean validation curve; runs that stopped early are padded with their last value."""
    curve_std: tuple[float, ...]
    """Element-wise sample std of the padded curves (0 for one run): the band in the learning-curve plot."""
    best: bool = False
    """Highest mean score at this fraction."""
    cheapest_near_best: bool = False
    """Least training time among the strategies within one best-std of the best mean."""


@dataclass(frozen=True)
class TransferBenefit:
    """Torrey & Shavlik's three benefits of transfer for one strategy, from its mean curve."""

    strategy: str
    """Strategy spec."""
    start: float
    """Metric after the first epoch: the head start transfer gives."""
    slope: float | None
    """Mean gain per epoch over the first min(3, epochs) epochs; None with a single epoch."""
    asymptote: float
    """Best value of the mean curve: where training ends up."""
    start_gain: float | None
    """start minus scratch's start; None for scratch itself or when scratch was not run."""
    slope_gain: float | None
    """slope minus scratch's slope; None when either slope or scratch is missing."""
    asymptote_gain: float | None
    """asymptote minus scratch's asymptote; None for scratch itself or when scratch was not run."""


# ---------------------------------------------------------------- collecting runs


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories (holding config.yaml) among `paths` or anywhere below them, each once, in order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if RunDir(path).config.is_file():
            found.append(path)
            continue
        if not path.exists():
            raise TunelabError(f"{path}: no such run directory")
        below = sorted(config.parent for config in path.rglob("config.yaml")) if path.is_dir() else []
        if not below:
            raise TunelabError(
                f"{path} is not a run directory (no config.yaml) and holds none; "
                "give run directories or the folder above them"
            )
        found.extend(below)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)  # a run given directly and through its parent counts once
    return list(unique.values())


def collect(run_dirs: list[Path]) -> list[RunRecord]:
    """Read every finished run in `run_dirs` (run directories or folders above them) as a RunRecord.

    Incomplete runs are an error rather than silently left out: a report missing a seed would look like
    an honest mean. Runs of different models or data are refused because their scores do not compare.
    """
    dirs = find_run_dirs(run_dirs)
    incomplete = [d for d in dirs if not RunDir(d).complete]
    if incomplete:
        shown = ", ".join(map(str, incomplete[:3])) + (
            f" and {len(incomplete) - 3} more" if len(incomplete) > 3 else ""
        )
        raise TunelabError(
            f"incomplete run{'s' if len(incomplete) > 1 else ''} (no summary.json): {shown}; finish "
            f"{'each' if len(incomplete) > 1 else 'it'} "
            f"with `tunelab train --config {incomplete[0] / 'config.yaml'} --resume` "
            f"or remove {'them' if len(incomplete) > 1 else 'it'}"
        )
    records = [_read_run(d) for d in dirs]
    for name in ("model", "data", "metric"):
        values = sorted({getattr(r, name) for r in records})
        if len(values) > 1:
            raise TunelabError(
                f"the runs have different {name}s ({', '.join(map(repr, values))}); "
                f"a report compares strategies on one {name}: give only matching runs"
            )
    seen: dict[tuple, Path] = {}
    for r in records:
        key = (r.train_fraction, r.strategy, r.seed, r.fold)
        if key in seen:
            raise TunelabError(
                f"{seen[key]} and {r.path} are the same run (strategy {r.strategy}, seed {r.seed}, fold {r.fold}, "
                f"fraction {r.train_fraction:g}); a repeat would shrink the std: keep one"
            )
        seen[key] = r.path
    return records


def _read_run(path: Path) -> RunRecord:
    run = RunDir(path)
    config = from_yaml_file(TrainConfig, run.config)
    summary = load_json(run.summary)
    if not isinstance(summary, dict):
        raise TunelabError(f"{run.summary}: expected a JSON object; the run is damaged")
    if int(summary.get("format_version", 0)) > FORMAT_VERSION:
        raise TunelabError(
            f"{path} was written by a newer tunelab (format {summary['format_version']}); upgrade tunelab"
        )
    missing = [
        k
        for k in (
            "strategy",
            "score",
            "trainable_params",
            "total_params",
            "train_examples",
            "val_examples",
            "train_seconds",
            "peak_memory_mb",
            "checkpoint_bytes",
        )
        if k not in summary
    ]
    if missing:
        raise TunelabError(
            f"{run.summary} lacks {', '.join(missing)}; the run is damaged or from an older tunelab: train it again"
        )
    metric = summary.get("metric", "accuracy")
    try:
        epochs = run.read_metrics()
        curve = tuple(float(m[f"val_{metric}"]) for m in epochs)
        seconds = [float(m["seconds"]) for m in epochs]
    except (ValueError, KeyError, TypeError) as e:
        raise TunelabError(f"{run.metrics}: damaged epoch records ({e}); train the run again") from None
    if not curve:
        raise TunelabError(
            f"{path} has summary.json but no epochs in metrics.jsonl; the run is damaged: train it again"
        )
    return RunRecord(
        path=path,
        model=config.model,
        data=config.data,
        strategy=str(summary["strategy"]),
        seed=config.seed,
        fold=config.fold if config.folds else None,
        train_fraction=config.train_fraction,
        train_examples=int(summary["train_examples"]),
        val_examples=int(summary["val_examples"]),
        metric=metric,
        score=float(summary["score"]),
        trainable_params=int(summary["trainable_params"]),
        total_params=int(summary["total_params"]),
        train_seconds=float(summary["train_seconds"]),
        seconds_per_epoch=statistics.fmean(seconds),
        peak_memory_mb=float(summary["peak_memory_mb"]),
        checkpoint_bytes=int(summary["checkpoint_bytes"]),
        curve=curve,
    )


# ---------------------------------------------------------------- aggregation


def strategy_order(spec: str) -> tuple[int, str]:
    """Sort key: registry order (none, full, retrain, adapter, lora, scratch), then spec text; unknown keys last."""
    keys = list(REGISTRY)
    key = spec.split(":")[0]
    return (keys.index(key) if key in keys else len(keys), spec)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_curve(curves: list[tuple[float, ...]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Element-wise mean and std, each curve padded with its last value (an early-stopped run keeps its level)."""
    length = max(map(len, curves))
    padded = [list(c) + [c[-1]] * (length - len(c)) for c in curves]
    columns = list(zip(*padded))
    return tuple(statistics.fmean(c) for c in columns), tuple(_std(list(c)) for c in columns)


def _group(strategy: str, fraction: float, runs: list[RunRecord]) -> StrategyResult:
    scores = [r.score for r in runs]
    trainable = round(statistics.fmean(r.trainable_params for r in runs))
    total = round(statistics.fmean(r.total_params for r in runs))
    curve_mean, curve_std = _mean_curve([r.curve for r in runs])
    return StrategyResult(
        strategy=strategy,
        train_fraction=fraction,
        train_examples=statistics.fmean(r.train_examples for r in runs),
        n_runs=len(runs),
        metric=runs[0].metric,
        score_mean=statistics.fmean(scores),
        score_std=_std(scores),
        trainable_params=trainable,
        total_params=total,
        trainable_percent=100.0 * trainable / total if total else 0.0,
        train_seconds_mean=statistics.fmean(r.train_seconds for r in runs),
        seconds_per_epoch_mean=statistics.fmean(r.seconds_per_epoch for r in runs),
        peak_memory_mb_max=max(r.peak_memory_mb for r in runs),
        checkpoint_bytes_mean=statistics.fmean(r.checkpoint_bytes for r in runs),
        curve_mean=curve_mean,
        curve_std=curve_std,
    )


def aggregate(records: list[RunRecord]) -> list[StrategyResult]:
    """One StrategyResult per (train_fraction, strategy), ordered by fraction then strategy, best/cheapest marked."""
    groups: dict[tuple[float, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.train_fraction, r.strategy), []).append(r)
    results = []
    for fraction in sorted({f for f, _ in groups}):
        row = sorted((s for f, s in groups if f == fraction), key=strategy_order)
        results.extend(_mark([_group(s, fraction, groups[fraction, s]) for s in row]))
    return results


def _mark(results: list[StrategyResult]) -> list[StrategyResult]:
    """Flag the best and the cheapest-within-noise-of-the-best among the strategies of one fraction."""
    best = max(results, key=lambda r: (r.score_mean, -r.train_seconds_mean))
    near = [r for r in results if r.score_mean >= best.score_mean - best.score_std]
    cheapest = min(near, key=lambda r: (r.train_seconds_mean, r.trainable_params))
    return [replace(r, best=r is best, cheapest_near_best=r is cheapest) for r in results]


def at_fraction(results: list[StrategyResult], fraction: float) -> list[StrategyResult]:
    """The results at one training-set fraction, in report order."""
    return [r for r in results if r.train_fraction == fraction]


def largest_fraction(results: list[StrategyResult]) -> float:
    """The largest training-set fraction in the results: where learning curves and benefits are compared."""
    return max(r.train_fraction for r in results)


# ---------------------------------------------------------------- the three benefits


def benefits(curve: tuple[float, ...] | list[float]) -> tuple[float, float | None, float]:
    """(start, slope, asymptote) of a validation curve, after Torrey & Shavlik's three benefits of transfer.

    start = the metric after the first epoch; slope = mean gain per epoch over the first min(3, n) epochs,
    (c[n-1] - c[0]) / (n - 1), None for a one-epoch curve; asymptote = the best value reached.
    """
    if not curve:
        raise ValueError("benefits() needs at least one epoch")
    n = min(3, len(curve))
    slope = (curve[n - 1] - curve[0]) / (n - 1) if n > 1 else None
    return curve[0], slope, max(curve)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def benefit_table(results: list[StrategyResult]) -> list[TransferBenefit]:
    """The three benefits of every strategy at the largest fraction, with differences against scratch if it ran."""
    top = at_fraction(results, largest_fraction(results))
    base = next((r for r in top if r.strategy.split(":")[0] == SCRATCH), None)
    ref = benefits(base.curve_mean) if base is not None else (None, None, None)
    rows = []
    for r in top:
        start, slope, asymptote = benefits(r.curve_mean)
        own = r is base
        rows.append(
            TransferBenefit(
                strategy=r.strategy,
                start=start,
                slope=slope,
                asymptote=asymptote,
                start_gain=None if own else _minus(start, ref[0]),
                slope_gain=None if own else _minus(slope, ref[1]),
                asymptote_gain=None if own else _minus(asymptote, ref[2]),
            )
        )
    return rows
