"""`CompareConfig`: the settings of `tunelab compare`, every shared training group plus the grid to run.

Every setting a training run takes and that is not particular to one run (strategy, seed, fold, data
fraction, run folder) comes from the same groups as `TrainConfig`, so a comparison runs under exactly the
settings a user trains with. May import only `tunelab.settings.fields` and `tunelab.settings.groups`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.settings.fields import setting
from tunelab.settings.groups import (
    CacheSettings,
    DataSettings,
    EpochSettings,
    EvaluationSettings,
    HardwareSettings,
    LoopSettings,
    ModelSettings,
)


# Groups in reverse of the order their fields appear in --help (dataclasses collect the last base first).
@dataclass(frozen=True, kw_only=True)
class CompareConfig(
    HardwareSettings, CacheSettings, LoopSettings, EpochSettings, EvaluationSettings, DataSettings, ModelSettings
):
    """Everything `tunelab compare` needs; every strategy trains under the same shared settings."""

    out: str = "runs/compare"
    """Output directory: the runs (under runs/), results.csv/.md, plots and report.html."""
    strategies: tuple[str, ...] | None = None
    """Strategy specs to compare, comma-separated, e.g. none,full,retrain:4,lora:8; none = every registered strategy."""
    seeds: int = setting(1, low=1)
    """Repetitions with seeds 0 .. seeds-1 (mean and std are reported)."""
    data_fractions: tuple[float, ...] = setting((1.0,), low=0, high=1)
    """Training-set fractions to compare at, e.g. 0.1,0.3,1.0 (stratified subsets, same validation set)."""
    lrs: tuple[str, ...] = ()
    """Per-strategy head learning rates as spec=lr, e.g. scratch=3e-3,full=5e-4; the others use lr."""
