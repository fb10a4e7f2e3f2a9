"""`TrainConfig`: the settings of one training run, the shared groups plus what is particular to one run.

Its field names are a file format: every run saves its TrainConfig as config.yaml and `--resume`,
`tunelab report` and run-directory models read it back, so a name here is never renamed lightly.
May import only `tunelab.settings.fields` and `tunelab.settings.groups`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.settings.fields import setting
from tunelab.settings.groups import RunSettings


# The shared groups' fields come first in --help and config.yaml (model first), the per-run fields last.
@dataclass(frozen=True, kw_only=True)
class TrainConfig(RunSettings):
    """Everything `tunelab train` needs; saved as config.yaml in the run so eval and --resume see the same run.

    The fields below are the ones that differ between the runs of a comparison; `compare` sets them per
    run and passes every shared group on unchanged.
    """

    strategy: str = "full"
    """Transfer strategy spec, e.g. none, full, retrain:3, adapter, lora:8, scratch."""
    out: str = "runs/run"
    """Run directory: config, metrics, checkpoints and the trained weights go here."""
    seed: int = 0
    """Random seed for the split, initialisation, shuffling and augmentation."""
    train_fraction: float = setting(1.0, low=0, high=1)
    """Train on this stratified fraction of the training split; the validation set stays the same."""
    fold: int = setting(0, low=0)
    """Which fold (0 .. folds-1) is the validation set when folds is set."""
    resume: bool = False
    """Continue an interrupted run in `out` from its last completed epoch."""
