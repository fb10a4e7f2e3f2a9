"""Is a strategy within noise of the best? A paired 95% t-interval over the seeds and folds both ran.

Pure arithmetic on (seed, fold, score) triples, no tunelab imports: results.py applies it to every strategy
of a fraction, and the report states `RULE` word for word. scipy is not a dependency, so the t quantiles
come from a standard table for 1..30 degrees of freedom and the normal quantile beyond.
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

RULE = (
    "Within noise of the best: the 95% t-interval of the mean per-(seed, fold) difference to the best strategy "
    "includes 0 (t critical values from a table for 1-30 degrees of freedom, the normal 1.96 beyond); "
    "with one pair there is no spread and it is not decidable."
)
"""The noise rule in one line, as the report states it."""

WITHIN, BELOW, ABOVE, UNDECIDABLE, NO_PAIRS = "within noise", "below", "above", "not decidable", "no pairs"
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
    """WITHIN (the interval includes 0), BELOW, ABOVE, UNDECIDABLE (one pair) or NO_PAIRS."""


def t_critical(df: int) -> float:
    """Two-sided 95% critical value for `df` degrees of freedom: the t table up to 30, the normal beyond."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 1 degree of freedom, got {df}")
    return T95[df - 1] if df <= len(T95) else Z95


def paired(
    runs: Sequence[tuple[int, int | None, float]], best: Sequence[tuple[int, int | None, float]], against: str
) -> Paired:
    """Compare (seed, fold, score) runs with the best strategy's runs of the same seed and fold (see RULE).

    Pairing removes what a seed or fold does to every strategy alike (the split, the data order), so the
    interval measures the strategy's own effect; a run without a partner (its partner failed) is left out.
    """
    theirs = {(seed, fold): score for seed, fold, score in best}
    diffs = [score - theirs[seed, fold] for seed, fold, score in runs if (seed, fold) in theirs]
    if not diffs:
        return Paired(against, 0, None, None, None, NO_PAIRS)
    mean = statistics.fmean(diffs)
    if len(diffs) == 1:
        return Paired(against, 1, mean, None, None, UNDECIDABLE)
    half = t_critical(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    low, high = mean - half, mean + half
    verdict = WITHIN if low <= 0 <= high else (BELOW if high < 0 else ABOVE)
    return Paired(against, len(diffs), mean, low, high, verdict)
