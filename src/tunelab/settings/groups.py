"""The settings groups that train, compare and advise share: each setting, its default and its doc, once.

A command's settings class inherits the groups it needs (`tunelab.settings.train` and its siblings), so
a setting means the same thing, with the same default and limits, wherever it appears, and `compare`
hands every group it shares with `TrainConfig` to each run without listing fields
(`tunelab.settings.fields.shared_settings`). Every group is `kw_only`, so a required field (model) can
sit in any group and composition order does not matter to the constructor.

Fields whose allowed values come from a registry (task) take their choices from the command that
parses them; this layer imports no registry. May import only `tunelab.settings.fields` and `tunelab.errors`
(a combination of settings that can never be valid is refused where the settings are built).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.errors import TunelabError
from tunelab.settings.fields import setting


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """Which model a command starts from."""

    model: str
    """Model: zoo name (see `tunelab models`), timm:<name>, hf:<id>, a model directory or a run directory."""
    trust_remote_code: bool = False
    """Let a Hugging Face model run the Python code it ships (command line only; off by default)."""


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """Where the labelled examples are and how to read them."""

    data: str = ""
    """Training data path: an image folder tree or a text file (CSV/TSV/JSONL)."""
    task: str = "auto"
    """Task: auto (guessed from the data) or a registered task name, e.g. image-classification, token-classification."""
    text_column: str | None = None
    """Text column of a table; none = detected from the header."""
    label_column: str = "label"
    """Label column of a table."""
    max_length: int | None = setting(None, low=1)
    """Tokens per text example (a text is first cut to 100 characters a token); none = the model's default."""
    max_image_pixels: int = setting(100_000_000, low=1)
    """Refuse images that decode to more pixels than this (a JPEG counts at its reduced decoding size)."""
    image_size: int | None = setting(None, low=16)
    """Side in pixels of the square an image is resized and cropped to; none = the model's own input size."""
    class_names: tuple[str, ...] | None = None
    """Names for a table's integer labels 0, 1, ..., in that order (e.g. negative,positive); none = as written."""


@dataclass(frozen=True, kw_only=True)
class PredictSettings:
    """How `tunelab predict` reports each input; a group so its flag is bounded like every setting."""

    top_k: int = setting(3, low=1)
    """Labels to show per input."""


@dataclass(frozen=True, kw_only=True)
class EvaluationSettings:
    """Which examples validate a run (a separate file, a held-out fraction, or K folds) and which score it.

    Validation chooses the best epoch; a score measured on the same examples is optimistic (it favours
    noisy curves), so a test set, given or held out, scores the chosen model once on examples that took
    no part in training or selection.
    """

    val_data: str | None = None
    """Validation data path; none = split val_fraction off the training data."""
    val_fraction: float = setting(0.2, low=0, high=1)
    """Fraction of the training data held out for validation when no val_data is given."""
    folds: int | None = setting(None, low=2)
    """K-fold cross-validation: pool train and val, split them into this many stratified folds; none = off."""
    test_data: str | None = None
    """Labelled test data in the training data's format: scores the best epoch once; none = no test file."""
    test_fraction: float | None = setting(None, low=0, high=1)
    """Hold out this stratified fraction of the training data as the test set (one split for all seeds); none = off."""

    def __post_init__(self) -> None:
        if self.test_data is not None and self.test_fraction is not None:
            raise TunelabError(
                "test_data and test_fraction both given: a run has one test set; "
                "keep test_data to score on that file, or test_fraction to hold out part of the training data"
            )


@dataclass(frozen=True, kw_only=True)
class EpochSettings:
    """How long a run trains: its own group because advise's short verification runs take verify_epochs."""

    epochs: int = setting(5, low=1)
    """Passes over the training data."""


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    """How each optimisation step is taken: batch, optimiser, schedule, stopping, augmentation, adversary."""

    batch_size: int = setting(32, low=1)
    """Examples per optimisation step."""
    lr: float | None = setting(None, low=0)
    """New head's learning rate; pretrained weights train at a fraction of it (full: 0.1x); none = strategy default."""
    optimizer: str = setting("adamw", choices=("adamw", "sgd"))
    """Optimizer: adamw, or sgd (with momentum)."""
    momentum: float = setting(0.9, low=0, high=1)
    """SGD momentum (ignored by adamw)."""
    weight_decay: float = setting(0.01, low=0)
    """Weight decay (decoupled for adamw; not applied to biases and norm weights)."""
    scheduler: str = setting("cosine", choices=("cosine", "linear", "constant", "onecycle"))
    """Learning-rate schedule after warmup: cosine or linear decay to zero, constant, or onecycle."""
    warmup: float = setting(0.1, low=0, high=1)
    """Fraction of steps with linear warmup before the schedule (onecycle: the rising fraction)."""
    grad_accumulation: int = setting(1, low=1)
    """Batches whose gradients add up before one optimizer step (effective batch = batch_size x this)."""
    label_smoothing: float = setting(0.0, low=0, high=1)
    """Label smoothing of the classification loss (0 = off; 0.1 is common)."""
    class_weights: str = setting("none", choices=("none", "balanced"))
    """Loss weight per class: none, or balanced (inverse class frequency in the training split)."""
    metric: str = "auto"
    """Validation metric picking the best epoch (ties: lower val loss); auto = the task's own, or e.g. macro_f1."""
    grad_clip: float | None = setting(1.0, low=0)
    """Clip the gradient norm to this value; none = no clipping."""
    patience: int | None = setting(None, low=1)
    """Early stopping: epochs without validation improvement before stopping; none = off."""
    augment: bool | None = None
    """Image train augmentation; unset = automatic: on unless a frozen prefix can be cached."""
    augmentation: str = setting("standard", choices=("standard", "randaugment", "trivialaugment"))
    """Image augmentation when on: standard (random crop and flip), or randaugment or trivialaugment on top."""
    length_grouping: bool | None = None
    """Text: batch texts of similar length (sorted within random mega-batches) to cut padding; unset = on for text."""
    attention_dropout: float | None = setting(None, low=0, high=1)
    """Text: dropout on attention weights in training; unset = 0, so torch's fused attention runs (checkpoints: 0.1)."""
    adversarial: str | None = setting(None, choices=("fgm", "pgd"))
    """Adversarial training on the word embeddings of a text model: fgm or pgd; none = off."""
    adv_epsilon: float = setting(1.0, low=0)
    """L2 size of the adversarial perturbation of the embedding rows a batch uses."""
    adv_steps: int = setting(3, low=1)
    """PGD: attack steps per batch (FGM takes one)."""


@dataclass(frozen=True, kw_only=True)
class DomainSettings:
    """Unsupervised domain adaptation: labelled source data (--data) and unlabelled target data."""

    target_data: str | None = None
    """Unlabelled target-domain examples (image folder, text file, CoNLL file for NER; labels ignored); none = off."""
    adapt: str | None = setting(None, choices=("dann", "adabn"))
    """Adapt to target_data: dann (adversarial domain classifier) or adabn (target BatchNorm statistics); none = off."""
    adapt_weight: float = setting(1.0, low=0)
    """DANN: largest weight of the domain loss (reached by the usual ramp over training)."""


@dataclass(frozen=True, kw_only=True)
class TrackingSettings:
    """Experiment tracking: per-epoch metrics, the settings and the summary sent to trackers users already use."""

    log_with: tuple[str, ...] = ()
    """Experiment trackers (accelerate's), comma-separated: tensorboard, mlflow, wandb, ...; empty = none."""
    tracking_dir: str | None = None
    """Where file-based trackers write (tensorboard event files, an mlflow file store); none = <out>/tracking."""


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    """The feature cache: frozen blocks run once instead of every epoch."""

    cache: bool = True
    """Cache the frozen prefix's outputs, so frozen blocks run once instead of every epoch."""
    cache_memory_mb: int = setting(2048, low=0)
    """Memory for the feature cache in MB; beyond this it spills to disk."""
    feature_store: str | None = None
    """Where runs share cached features (same prefix, inputs, examples); compare sets <out>/feature-cache; none: off."""


@dataclass(frozen=True, kw_only=True)
class HardwareSettings:
    """How the machine does the work: number formats and data loading processes."""

    mixed_precision: str = setting("auto", choices=("auto", "no", "fp16", "bf16"))
    """Mixed precision: auto (bf16/fp16 on a GPU that supports it), no, fp16 or bf16."""
    num_workers: int = setting(0, low=0)
    """Data loader worker processes; 0 = load in the main process."""


# Dataclasses collect fields from the last base to the first, so the groups are listed in reverse of the
# order their fields appear in --help and config.yaml: model first.
@dataclass(frozen=True, kw_only=True)
class RunSettings(
    TrackingSettings,
    HardwareSettings,
    CacheSettings,
    DomainSettings,
    LoopSettings,
    EpochSettings,
    EvaluationSettings,
    DataSettings,
    ModelSettings,
):
    """Every group a training run takes: train, compare and lr-find each compose it whole, so a group added
    here reaches all three (and every compare run, through `shared_settings`) without a list kept in each."""
