"""Comparison results: aggregate finished runs per (data fraction, strategy): the numbers.

Runs are read by records.py (from their directories alone); this module owns the aggregated dataclasses
and the arithmetic, paired.py the noise rule; plots.py draws the numbers, html.py writes them as text and
report.py writes the report files. The run-level names (RunRecord, FailedRun, collect, ...) are re-exported
here, so a caller needs one import for "read these runs and aggregate them".

Aggregation rules, so two reports built from the same runs always agree and the table and the conclusion
use one definition of each number:
- runs are grouped by (train_fraction, strategy spec); seeds and folds of a group are repetitions;
  a failed run is listed but counts in no mean;
- a run's score is its summary's `score`: the test score when the run had a test set, else its best
  validation score; a group's score is the mean of its runs' scores, with the sample std (n-1) for n >= 2;
- `best` is the highest mean score at a fraction (ties: less training time, then fewer trainable params);
- every other strategy is compared with the best by the paired rule `paired.rule`: "within noise" when
  the 95% t-interval of the mean per-(seed, fold) difference includes 0 and stays above -margin;
- `cheapest_near_best` is, among the best and the strategies within noise of it, the one with the least
  mean wall-clock training time (ties: fewer trainable parameters).

May import: comparison.records, comparison.paired, strategies (registry order).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tunelab.comparison.paired import MARGIN, WITHIN, Paired, paired
from tunelab.comparison.records import FailedRun as FailedRun
from tunelab.comparison.records import RunFlag as RunFlag
from tunelab.comparison.records import RunRecord as RunRecord
from tunelab.comparison.records import collect as collect
from tunelab.comparison.records import find_run_dirs as find_run_dirs
from tunelab.strategies import REGISTRY

SCRATCH = "scratch"
"""Strategy key of the no-transfer baseline that the three benefits are measured against."""

DEGENERATE = ("at-chance", "one-class")
"""Flags that mean a run never learned anything: a scratch baseline with them is no baseline."""


@dataclass(frozen=True)
class StrategyResult:
    """All finished runs of one strategy at one training-set fraction, aggregated."""

    strategy: str
    """Strategy spec."""
    train_fraction: float
    """Fraction of the training split."""
    train_examples: float
    """Mean number of training examples (folds can differ by one)."""
    n_runs: int
    """Finished runs aggregated (seeds x folds): the n of every mean."""
    metric: str
    """Name of the metric."""
    score_mean: float
    """Mean over runs of each run's score: the number the table and the conclusion both report."""
    score_std: float
    """Sample standard deviation of the scores; 0 for one run (shown as n=1, not as a spread)."""
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
    val_score_mean: float
    """Mean best validation score (the selection score); equals score_mean when scored on validation."""
    scored_on: str
    """'test', 'validation', or 'test+validation' when its runs differ."""
    eval_examples: float
    """Mean size of the set the scores were measured on."""
    chance_score: float | None
    """Mean score of always predicting the most frequent class; None when no run recorded it."""
    augment: tuple[bool, ...]
    """Augmentation settings its runs trained with, each once (empty: not recorded)."""
    cached_blocks: tuple[int, ...]
    """Cached-block counts of its runs, each once (empty: not recorded)."""
    flags: tuple[RunFlag, ...]
    """Every sanity flag its runs raised."""
    run_scores: tuple[tuple[int, int | None, float], ...]
    """(seed, fold, score) of each run: what the paired comparison pairs."""
    n_failed: int = 0
    """Runs of this strategy and fraction that failed: listed, not in any mean."""
    vs_best: Paired | None = None
    """Paired comparison with the best strategy at this fraction; None for the best itself."""
    best: bool = False
    """Highest mean score at this fraction."""
    within_noise: bool = False
    """The best itself, or its paired interval with the best includes 0."""
    cheapest_near_best: bool = False
    """Least training time among the best and the strategies within noise of it."""


@dataclass(frozen=True)
class TransferBenefit:
    """Torrey & Shavlik's three benefits of transfer for one strategy, from its mean validation curve."""

    strategy: str
    """Strategy spec."""
    start: float
    """Metric after the first epoch: the head start transfer gives."""
    slope: float | None
    """Mean gain per epoch over the first min(3, epochs) epochs; None with a single epoch."""
    asymptote: float
    """Best value of the mean validation curve: where training ends up."""
    start_gain: float | None
    """start minus scratch's start; None for scratch itself, without scratch, or against a degenerate scratch."""
    slope_gain: float | None
    """slope minus scratch's slope; None when either slope or a usable scratch is missing."""
    asymptote_gain: float | None
    """asymptote minus scratch's asymptote; None for scratch itself or without a usable scratch."""


@dataclass(frozen=True)
class Baseline:
    """The scratch baseline at the largest fraction, and whether the three benefits can be measured against it."""

    result: StrategyResult | None
    """Scratch's aggregated result; None when scratch did not run (or every run of it failed)."""
    degenerate_runs: int
    """Scratch runs flagged at-chance or one-class."""
    usable: bool
    """A baseline to subtract: it ran and not every run of it is degenerate."""
    warning: str | None
    """What the reader must know about it; None when nothing."""


# ---------------------------------------------------------------- aggregation


def strategy_order(spec: str) -> tuple[int, str]:
    """Sort key: registry order (none, full, retrain, adapter, lora, scratch), then spec text; unknown keys last."""
    keys = list(REGISTRY)
    key = spec.split(":")[0]
    return (keys.index(key) if key in keys else len(keys), spec)


def is_scratch(spec: str) -> bool:
    """Whether a strategy spec is the no-transfer baseline."""
    return spec.split(":")[0] == SCRATCH


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_curve(curves: list[tuple[float, ...]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Element-wise mean and std, each curve padded with its last value (an early-stopped run keeps its level)."""
    length = max(map(len, curves))
    padded = [list(c) + [c[-1]] * (length - len(c)) for c in curves]
    columns = list(zip(*padded))
    return tuple(statistics.fmean(c) for c in columns), tuple(_std(list(c)) for c in columns)


def _group(strategy: str, fraction: float, runs: list[RunRecord], n_failed: int) -> StrategyResult:
    scores = [r.score for r in runs]
    trainable = round(statistics.fmean(r.trainable_params for r in runs))
    total = round(statistics.fmean(r.total_params for r in runs))
    curve_mean, curve_std = _mean_curve([r.curve for r in runs])
    chances = [r.chance_score for r in runs if r.chance_score is not None]
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
        val_score_mean=statistics.fmean(r.val_score for r in runs),
        scored_on="+".join(sorted({r.scored_on for r in runs})),
        eval_examples=statistics.fmean(r.eval_examples for r in runs),
        chance_score=statistics.fmean(chances) if chances else None,
        augment=tuple(sorted({r.augment for r in runs if r.augment is not None})),
        cached_blocks=tuple(sorted({r.cached_blocks for r in runs if r.cached_blocks is not None})),
        flags=tuple(flag for r in sorted(runs, key=_run_key) for flag in r.flags),
        run_scores=tuple((r.seed, r.fold, r.score) for r in sorted(runs, key=_run_key)),
        n_failed=n_failed,
    )


def _run_key(r: RunRecord) -> tuple[int, int]:
    return (r.seed, -1 if r.fold is None else r.fold)


def aggregate(
    records: Sequence[RunRecord], failed: Sequence[FailedRun] = (), margin: float = MARGIN
) -> list[StrategyResult]:
    """One StrategyResult per (train_fraction, strategy), ordered by fraction then strategy, best/cheapest marked.

    `failed` runs only set each group's n_failed: they are in no mean and no paired comparison. `margin` is
    the largest loss against the best that the paired rule still calls within noise (`paired.rule`).
    """
    groups: dict[tuple[float, str], list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.train_fraction, r.strategy), []).append(r)
    results = []
    for fraction in sorted({f for f, _ in groups}):
        row = sorted((s for f, s in groups if f == fraction), key=strategy_order)
        lost = {s: sum(1 for f in failed if (f.train_fraction, f.strategy) == (fraction, s)) for s in row}
        results.extend(_mark([_group(s, fraction, groups[fraction, s], lost[s]) for s in row], margin))
    return results


def _mark(results: list[StrategyResult], margin: float) -> list[StrategyResult]:
    """Mark the best, the strategies within noise of it, and the cheapest of those, among one fraction's."""
    best = max(results, key=lambda r: (r.score_mean, -r.train_seconds_mean, -r.trainable_params))
    marked = []
    for r in results:
        if r is best:
            marked.append(replace(r, best=True, within_noise=True))
        else:
            vs = paired(r.run_scores, best.run_scores, best.strategy, margin)
            marked.append(replace(r, vs_best=vs, within_noise=vs.verdict == WITHIN))
    cheapest = min((r for r in marked if r.within_noise), key=lambda r: (r.train_seconds_mean, r.trainable_params))
    return [replace(r, cheapest_near_best=r is cheapest) for r in marked]


def at_fraction(results: Sequence[StrategyResult], fraction: float) -> list[StrategyResult]:
    """The results at one training-set fraction, in report order."""
    return [r for r in results if r.train_fraction == fraction]


def largest_fraction(results: Sequence[StrategyResult]) -> float:
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


def scratch_baseline(results: Sequence[StrategyResult]) -> Baseline:
    """Scratch at the largest fraction, and whether its flags leave it usable as the benefits' baseline.

    Every scratch run flagged at-chance or one-class: the baseline never left chance, so differences against
    it would only measure that transfer learned something at all; the gains are not computed. Some runs
    flagged: they are computed, with a warning that they overstate what transfer buys.
    """
    top = at_fraction(results, largest_fraction(results))
    base = next((r for r in top if is_scratch(r.strategy)), None)
    if base is None:
        return Baseline(None, 0, False, None)
    runs = {(f.seed, f.fold) for f in base.flags if f.flag in DEGENERATE}
    names = ", ".join(sorted({f.flag for f in base.flags if f.flag in DEGENERATE}))
    if not runs:
        return Baseline(base, 0, True, None)
    if len(runs) >= base.n_runs:
        warning = (
            f"Gains against scratch not computed: the scratch baseline never left chance ({names} in "
            f"{len(runs)} of {base.n_runs} run{'s' * (base.n_runs > 1)})."
        )
        return Baseline(base, len(runs), False, warning)
    warning = (
        f"Scratch is flagged {names} in {len(runs)} of {base.n_runs} runs: the gains against it overstate "
        "what transfer buys."
    )
    return Baseline(base, len(runs), True, warning)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def benefit_table(results: Sequence[StrategyResult]) -> list[TransferBenefit]:
    """The three benefits of every strategy at the largest fraction, with differences against a usable scratch."""
    top = at_fraction(results, largest_fraction(results))
    baseline = scratch_baseline(results)
    base = baseline.result
    ref = benefits(base.curve_mean) if base is not None and baseline.usable else (None, None, None)
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
