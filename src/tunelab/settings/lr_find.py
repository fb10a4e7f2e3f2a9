"""`LrFindConfig`: the settings of `tunelab lr-find`, every shared training group plus the sweep's own.

The test has to run on exactly the model, strategy, data split and optimiser a `tunelab train` with the same
flags would use, or its suggestion is for another run; so it takes the same groups as `TrainConfig` (a train
command line works with `train` replaced by `lr-find`) and hands them to a TrainConfig
(`as_train_config`). The settings that say how long or at what lr a run trains mean nothing to a sweep
that sets the lr itself each step; LR_FIND_NOTES says so in --help.

May import only `tunelab.settings.fields`, `tunelab.settings.groups`, `tunelab.settings.train` and
`tunelab.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tunelab.errors import TunelabError
from tunelab.settings.fields import setting, shared_settings
from tunelab.settings.groups import DomainSettings, RunSettings, TrackingSettings
from tunelab.settings.train import TrainConfig

_IGNORED = "lr-find ignores it: the sweep sets the learning rate itself at every step."
LR_FIND_NOTES = {
    "lr": _IGNORED,
    "scheduler": _IGNORED,
    "warmup": _IGNORED,
    "epochs": "lr-find ignores it: --steps says how long the sweep runs.",
    "patience": "lr-find ignores it: nothing is validated.",
    "metric": "lr-find ignores it: nothing is validated.",
    "log_with": "lr-find ignores it: the sweep writes its own curve (lr_find.csv, lr_find.png).",
    "tracking_dir": "lr-find ignores it: the sweep writes its own curve (lr_find.csv, lr_find.png).",
    "target_data": "lr-find ignores it: the sweep trains on the labelled data only.",
    "adapt": "lr-find ignores it: the sweep trains on the labelled data only.",
    "adapt_weight": "lr-find ignores it: the sweep trains on the labelled data only.",
}
"""Notes added to the --help of shared settings that the sweep does not use (accepted, so that a train
command line works unchanged)."""


@dataclass(frozen=True, kw_only=True)
class LrFindConfig(RunSettings):
    """Everything `tunelab lr-find` needs: the run it tests (the shared groups, and train's per-run fields but
    resume; each declared as in TrainConfig) and the sweep."""

    strategy: str = TrainConfig.strategy
    """Transfer strategy spec, e.g. none, full, retrain:3, adapter, lora:8, scratch."""
    seed: int = TrainConfig.seed
    """Random seed for the split, initialisation, shuffling and augmentation."""
    train_fraction: float = setting(1.0, low=0, high=1)
    """Train on this stratified fraction of the training split; the validation set stays the same."""
    fold: int = setting(0, low=0)
    """Which fold (0 .. folds-1) is the validation set when folds is set."""
    start_lr: float = 1e-7
    """Head learning rate of the sweep's first step (each parameter group keeps its strategy's lr scale)."""
    end_lr: float = 10.0
    """Head learning rate of the sweep's last step; the lr grows geometrically from start_lr to it."""
    steps: int = setting(100, low=2)
    """Optimizer steps of the sweep; the training data is passed over again when one pass has fewer batches."""
    out: str = "runs/lr-find"
    """Output folder: lr_find.png (the plot), lr_find.csv (lr, loss, smoothed) and lr_find.json."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.start_lr < self.end_lr:
            raise TunelabError(
                f"lr-find sweeps from start_lr up to end_lr, both positive; got start_lr {self.start_lr!r} and "
                f"end_lr {self.end_lr!r}: give e.g. --start-lr 1e-7 --end-lr 10"
            )

    def as_train_config(self) -> TrainConfig:
        """The TrainConfig of the run this sweep tests: every shared setting and the run's own (strategy, seed,
        data fraction, fold). Its `out` is this sweep's folder; nothing is trained into a run directory.
        Domain adaptation and tracking stay at their defaults (off): LR_FIND_NOTES says the sweep ignores them."""
        ignored = {f.name for group in (DomainSettings, TrackingSettings) for f in fields(group)}
        shared = {k: v for k, v in shared_settings(self, TrainConfig).items() if k not in ignored}
        return TrainConfig(
            **shared,
            strategy=self.strategy,
            seed=self.seed,
            train_fraction=self.train_fraction,
            fold=self.fold,
            out=self.out,
        )
