"""Is a strategy as good as the best? A paired 95% t-interval over the seeds and folds both ran, and a margin.

An interval that merely includes 0 does not show two strategies alike: with two seeds the interval of a
10-point gap can include 0 (t has 12.7 as its critical value at one degree of freedom). So "within noise"
asks more: the interval includes 0 *and* its lower end stays within `margin` (default one point of the
metric) of the best, i.e. the runs rule out a loss larger than the margin. An interval that includes 0 but
reaches further down is "too few runs to tell", and the report says so instead of calling it a tie.

Pure arithmetic on (seed, fold, score) triples, no tunelab imports: results.py applies it to every strategy
of a fraction, and the report states `rule(margin)` word for word. scipy is not a dependency, so the t
quantiles come from a standard table for 1..30 degrees of freedom and the normal quantile beyond.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""Two-sided 95% critical values of Student's t for 1..30 degrees of freedom (standard table, 3 decimals)."""

Z95 = 1.960
"""The normal 95% critical value, used beyond 30 degrees of freedom (t is within 0.08 of it there)."""

MARGIN = 0.01
"""Default margin: the largest loss against the best (in the metric's units) that still counts as as good."""


def rule(margin: float = MARGIN) -> str:
    """The noise rule in one line, as the report states it."""
    return (
        "Within noise of the best: the 95% t-interval of the mean per-(seed, fold) difference to the best strategy "
        f"includes 0 and its lower end is above -{margin:g} (the margin); an interval that includes 0 but reaches "
        "below the margin is too few runs to tell (t critical values from a table for 1-30 degrees of freedom, "
        "the normal 1.96 beyond); with one pair there is no spread and it is not decidable."
    )


WITHIN, BELOW, ABOVE, WIDE, UNDECIDABLE, NO_PAIRS = (
    "within noise",
    "below",
    "above",
    "too few runs to tell",
    "not decidable",
    "no pairs",
)
"""Verdicts of the paired comparison with the best strategy."""


@dataclass(frozen=True)
class Paired:
    """A strategy's score minus the best strategy's, paired by (seed, fold): the noise judgement of `RULE`."""

    against: str
    """The best strategy's spec."""
    n: int
    """Pairs: (seed, fold) that both strategies finished."""
    mean: float | None
    """Mean per-pair difference (negative: below the best); None without pairs."""
    low: float | None
    """Lower end of the 95% t-interval of the mean difference; None with fewer than two pairs."""
    high: float | None
    """Upper end of that interval; None with fewer than two pairs."""
    verdict: str
    """WITHIN (the interval includes 0, above -margin), WIDE (includes 0, reaches below -margin), BELOW, ABOVE,
    UNDECIDABLE (one pair) or NO_PAIRS."""
    margin: float = MARGIN
    """The margin the verdict was judged with."""


def t_critical(df: int) -> float:
    """Two-sided 95% critical value for `df` degrees of freedom: the t table up to 30, the normal beyond."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 1 degree of freedom, got {df}")
    return T95[df - 1] if df <= len(T95) else Z95


def paired(
    runs: Sequence[tuple[int, int | None, float]],
    best: Sequence[tuple[int, int | None, float]],
    against: str,
    margin: float = MARGIN,
) -> Paired:
    """Compare (seed, fold, score) runs with the best strategy's runs of the same seed and fold (see `rule`).

    Pairing removes what a seed or fold does to every strategy alike (the split, the data order), so the
    interval measures the strategy's own effect; a run without a partner (its partner failed) is left out.
    """
    theirs = {(seed, fold): score for seed, fold, score in best}
    diffs = [score - theirs[seed, fold] for seed, fold, score in runs if (seed, fold) in theirs]
    if not diffs:
        return Paired(against, 0, None, None, None, NO_PAIRS, margin)
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return Paired(against, 1, mean, None, None, UNDECIDABLE, margin)
    half = t_critical(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    low, high = mean - half, mean + half
    if high < 0:
        verdict = BELOW
    elif low > 0:
        verdict = ABOVE
    else:
        verdict = WITHIN if low >= -margin - 1e-12 else WIDE  # 1e-12: a low of exactly -margin is within
    return Paired(against, len(diffs), mean, low, high, verdict, margin)
