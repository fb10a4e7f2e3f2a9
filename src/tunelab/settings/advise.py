"""`AdviseConfig`: the settings of `tunelab advise`, the measurement's own plus the shared training groups.

The shared groups serve twice: data and model settings say what is measured, and every group reaches the
`--verify` runs, which are an ordinary compare built from them. `ThresholdSettings` holds the decision
guide's boundaries; unset, each takes the value fitted for the data's modality
(`tunelab.advice.decide.FITTED`), since images and text disagree on them. May import only
`tunelab.settings.fields` and `tunelab.settings.groups`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.settings.fields import setting
from tunelab.settings.groups import (
    CacheSettings,
    DataSettings,
    EvaluationSettings,
    HardwareSettings,
    LoopSettings,
    ModelSettings,
)


@dataclass(frozen=True, kw_only=True)
class ThresholdSettings:
    """Where the decision guide's boundaries lie (the reasons for each value: `tunelab.advice.decide`)."""

    small_per_class: int | None = setting(None, low=1)
    """Median examples per class below which data is small (full is not advised); none = fitted for the modality."""
    similar_probe_gain: float | None = None
    """Probe gain of pretrained over random-init features at or above which data is similar; none = fitted."""
    transfer_drop: float | None = setting(None, low=0)
    """Fall of the probe accuracy after its peak that advises retrain:K (1 = never); none = fitted for the modality."""
    small_strategy: str = setting("auto", choices=("auto", "lora", "adapter", "none", "bitfit"))
    """Strategy for small data whose features transfer up to the last block; auto = fitted for the modality."""


# Groups in reverse of the order their fields appear in --help (dataclasses collect the last base first).
@dataclass(frozen=True, kw_only=True)
class AdviseConfig(
    ThresholdSettings, HardwareSettings, CacheSettings, LoopSettings, EvaluationSettings, DataSettings, ModelSettings
):
    """Everything `tunelab advise` needs; the training groups apply to the --verify runs."""

    max_examples: int = setting(400, low=1)
    """Measure on a stratified sample of at most this many examples (at least 4 a class). NER: sentences, drawn
    only until they hold 2,500 words, of which 2,000 tagged words are kept."""
    control_examples: int = setting(200, low=1)
    """The random-init control runs on a stratified part of the sample this big (at least 4 a class)."""
    budget_params: int | None = setting(None, low=1)
    """Most trainable parameters you can afford; strategies over it are replaced by cheaper ones."""
    budget_memory_mb: float | None = None
    """Most training memory (weights, gradients, optimizer state) you can afford, in MB."""
    seed: int = 0
    """Seed of the measured sample."""
    verify: bool = False
    """Also train the recommendation and the runner-up briefly and report whether the advice held."""
    verify_epochs: int = setting(3, low=1)
    """Epochs for each verification run."""
    out: str = "runs/advise"
    """Where verification runs and their report go."""
