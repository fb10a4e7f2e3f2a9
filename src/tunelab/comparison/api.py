"""`tunelab.compare(config)`: a comparison for library users, returning its numbers, not only a report path.

The command prints the results table and the report's path; a Python caller wants the same numbers as
objects to act on (pick the best strategy, plot, log). `Comparison` holds the report's path and the
aggregated results exactly as the report computed them (one `aggregate` over the grid's finished runs,
judged with the compare's --margin), so the numbers a script reads are the table's numbers.

May import: comparison.grid, comparison.results, runs.rundir, settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.comparison.grid import compare as run_grid
from tunelab.comparison.grid import planned_runs
from tunelab.comparison.results import StrategyResult, aggregate, collect
from tunelab.runs.rundir import RunDir
from tunelab.settings import CompareConfig


@dataclass(frozen=True)
class Comparison:
    """What a compare produced: the report and the aggregated numbers behind it."""

    report: Path
    """report.html (results.md and results.csv sit beside it)."""
    results: tuple[StrategyResult, ...]
    """One result per (training-set fraction, strategy), in report order; `best`, `within_noise` and
    `cheapest_near_best` marked as the report marks them."""

    def at(self, strategy: str, fraction: float = 1.0) -> StrategyResult:
        """The result of `strategy` (its spec as the report shows it) at a training-set fraction."""
        for r in self.results:
            if r.strategy == strategy and r.train_fraction == fraction:
                return r
        known = ", ".join(sorted({r.strategy for r in self.results}))
        raise KeyError(f"no result for {strategy!r} at fraction {fraction:g}; strategies: {known}")

    def best(self, fraction: float | None = None) -> StrategyResult:
        """The best strategy at `fraction` (None: the largest fraction compared)."""
        fraction = max(r.train_fraction for r in self.results) if fraction is None else fraction
        return next(r for r in self.results if r.best and r.train_fraction == fraction)


def compare(config: CompareConfig) -> Comparison:
    """Run (or finish) the comparison `config` describes, as `tunelab compare` does, and return its numbers."""
    report = run_grid(config)
    finished = [Path(run.out) for run in planned_runs(config) if RunDir(Path(run.out)).complete]
    return Comparison(report, tuple(aggregate(collect(finished), margin=config.margin)))
