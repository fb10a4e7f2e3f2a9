"""What a task is to the rest of tunelab: a reader, a head, a dataset/collate pair, a scorer and a predictor.

The loss is the same for every task, cross-entropy over the positions whose label is not IGNORE (a
sentence or an image has one position; a tagged sentence has one per first sub-token), and the
strategies never see a task at all: a task may only change the head, add what its inputs need (entity
marker embeddings, say) as an extra parameter group after the strategy ran, and read its own files. So
adding a task is one file here and one `register_task(TaskEntry(...))` line in `tunelab/tasks/__init__.py`
(its name and modality there must match the class's), and every strategy works with it unchanged.

Imports torch: loaded through `tasks.registry.get_task`, never by `import tunelab.tasks`.
May import: errors, models, data, strategies.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tunelab.data import Examples, Splits, split_examples
from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.strategies import Plan

IGNORE = -100
"""Label of positions that do not count (padding, non-first sub-tokens): cross_entropy's ignore_index."""


class Report(Protocol):
    """What `tunelab eval` prints: a text table and a JSON-ready dict."""

    def format(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class Prediction(Protocol):
    """What `tunelab predict` prints per input."""

    def format(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Cross-entropy over every labelled position: (B, C) vs (B,) for a sentence, (B, T, C) vs (B, T) for tokens.

    Training may weight classes (`weight`, one per class: --class-weights; per token label for tagging) and
    smooth labels (--label-smoothing); "mean" then divides by the summed weight of the labelled positions
    (`target_weight`). Validation, eval reports and chance call it plain: their loss is the model's
    unweighted, unsmoothed cross-entropy, so it compares across epochs and across runs trained with other
    loss options, and a tie in the selection metric is broken on it.
    """
    return F.cross_entropy(
        logits.flatten(0, -2).float(),
        labels.flatten(),
        weight=weight,
        ignore_index=IGNORE,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def target_weight(labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """What task_loss's "mean" divides its sum by: the labelled positions, each counted at its class's weight."""
    kept = labels[labels != IGNORE]
    return kept.new_tensor(kept.numel(), dtype=torch.float32) if weight is None else weight[kept].float().sum()


def balanced_class_weights(labels: list, num_classes: int) -> torch.Tensor:
    """n / (k x count of the class) over every label in `labels` (per token label when an example has many).

    The inverse-frequency weighting of sklearn's class_weight="balanced": each class then carries the same
    total weight in the loss, so a rare class is not ignored. A class with no label (never a target) gets 1.
    """
    flat = np.asarray([y for x in labels for y in (x if isinstance(x, (list, tuple)) else (x,))], dtype=np.int64)
    flat = flat[flat != IGNORE]
    counts = np.bincount(flat, minlength=num_classes)[:num_classes].astype(np.float64)
    weights = np.where(counts > 0, len(flat) / (num_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def labelled_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) logits and (N,) labels of the positions that count, in order: what scorers receive."""
    keep = labels != IGNORE
    return logits[keep], labels[keep]


def one_class(predicted: np.ndarray, classes: tuple[str, ...], unit: str) -> str | None:
    """ "predicts 'X' for all N <unit>" when every prediction is class X; None when two or more classes occur."""
    values = np.unique(np.asarray(predicted))
    if len(values) != 1:
        return None
    return f"predicts {classes[int(values[0])]!r} for all {len(predicted)} {unit}"


def token_limit(backbone: Backbone, max_length: int | None) -> int:
    """Tokens per text: the run's --max-length, else the model's own default; checked against the model.

    Every text path (training, validation, eval, predict, embed, advise) asks here before it tokenises, so
    a length the model cannot take is one error before any work: above its position embeddings the
    model would index past them, and with no room beside its special tokens no text would be left.
    """
    limit = backbone.input.max_length if max_length is None else max_length
    positions = backbone.input.max_positions
    if positions is not None and limit > positions:
        raise TunelabError(
            f"max_length {limit} is more than {backbone.name} can take ({positions} positions); "
            f"use --max-length {positions} or less"
        )
    specials = backbone.input.tokenizer.num_special_tokens_to_add(pair=False)
    if limit <= specials:
        raise TunelabError(
            f"max_length {limit} leaves no room for text: {backbone.name} adds {specials} special tokens to "
            f"every example; use --max-length {specials + 1} or more"
        )
    return limit


class Task(ABC):
    """One kind of problem: how its data is read, what head it needs, how it is scored and predicted."""

    name: ClassVar[str]
    """The --task value."""
    modality: ClassVar[Literal["image", "text"]]
    """Which backbones fit."""
    new_weights_lr: ClassVar[float | None] = None
    """Default head learning rate, instead of the strategy's, for a strategy that trains only new weights
    (the head and inserted modules: none, adapter, lora) when --lr is not given; None = the strategy's."""
    metric: ClassVar[str] = "accuracy"
    """Name of the model-selection score: the summary's `metric`; each epoch records val_<metric>."""

    def selecting(self, metric: str, examples: Examples, backbone: Backbone, max_length: int | None) -> Task:
        """This task with `metric` (--metric; "auto" = the task's own) as its model-selection score.

        Checked against the names the task's scorer reports, asked of the scorer itself on no examples (so
        the list cannot drift from what a run records): a bad --metric is refused before any epoch.
        """
        if metric == "auto":
            return self
        reported = self.scorer(examples.subset([]), backbone, max_length)(torch.zeros(0, 1), np.zeros(0, np.int64))
        if metric not in reported:
            valid = f"{', '.join(reported)}, or auto ({self.metric})"
            raise TunelabError(f"--metric {metric}: {self.name} reports no such metric; use one of {valid}")
        chosen = copy.copy(self)
        chosen.metric = metric  # an instance value over the class default: get_task gives each run its own task
        return chosen

    @abstractmethod
    def read(self, path: str, classes: tuple[str, ...] | None, config) -> Examples:
        """Labelled examples from a file; with `classes` (training's) an unknown label is a DataError."""

    def read_sets(self, config) -> tuple[Examples, Examples | None]:
        """The training examples of --data and the validation examples the user gave (--val-data, labels checked
        against training's), or None when validation is to be split off the training examples by `split`.

        Reading and splitting are two steps so that a test set (--test-fraction) can be held out of the
        training examples in between (`runs.loaders.load_sets`), before validation ever sees them.
        """
        train = self.read(config.data, None, config)
        if config.val_data is None:
            return train, None
        return train, self.read(config.val_data, train.classes, config)

    def split(self, train: Examples, config) -> Splits:
        """Hold out --val-fraction of the training examples, stratified by label."""
        return split_examples(train, config.val_fraction, config.seed)

    def adapt(self, backbone: Backbone, num_outputs: int) -> None:
        """Give the backbone the head (and input changes) the task needs, before the strategy is applied."""
        backbone.replace_head(num_outputs)

    def finish(self, plan: Plan) -> Plan:
        """Add what the task trains whatever the strategy (after `Strategy.apply`); the plain head by default."""
        return plan

    def degenerate(self, predicted: np.ndarray, classes: tuple[str, ...]) -> str | None:
        """What "one class for everything" means for this task, said of `predicted` (the predicted class of every
        labelled position of an evaluation set), or None when the predictions are not degenerate.

        The default: every example gets the same class. The phrase completes "the best model ..." in a
        warning, e.g. "predicts 'ants' for all 160 examples".
        """
        return one_class(predicted, classes, "examples")

    @abstractmethod
    def dataset(
        self, examples: Examples, backbone: Backbone, train: bool, augment: bool, max_length: int | None
    ) -> Dataset:
        """Items for the loader: (input, label) pairs, with a `labels` attribute listing the labels in order."""

    @abstractmethod
    def collate(self, backbone: Backbone, max_length: int | None) -> Callable | None:
        """The loader's collate_fn (None: default stacking)."""

    @abstractmethod
    def scorer(
        self, examples: Examples, backbone: Backbone, max_length: int | None
    ) -> Callable[[torch.Tensor, np.ndarray], dict[str, float]]:
        """fn(logits, labels) over `examples`' labelled positions -> epoch metrics, `metric` among them."""

    @abstractmethod
    def report(
        self, examples: Examples, backbone: Backbone, max_length: int | None, logits: torch.Tensor, labels: np.ndarray
    ) -> Report:
        """The `tunelab eval` report for labelled positions of `examples`."""

    @abstractmethod
    def inputs(self, items: list[str], classes: tuple[str, ...]) -> Examples:
        """Unlabelled command-line inputs (paths or lines) as Examples with placeholder labels."""

    @abstractmethod
    def predictions(
        self,
        items: list[str],
        examples: Examples,
        backbone: Backbone,
        max_length: int | None,
        logits: torch.Tensor,
        classes: tuple[str, ...],
        k: int,
    ) -> list[Prediction]:
        """One printable prediction per input (`items` as given, `examples` from `inputs`) from its logits."""
