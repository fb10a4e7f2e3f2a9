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

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tunelab.data import Examples, Splits, split_examples
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


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every labelled position: (B, C) vs (B,) for a sentence, (B, T, C) vs (B, T) for tokens."""
    return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=IGNORE)


def labelled_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) logits and (N,) labels of the positions that count, in order: what scorers receive."""
    keep = labels != IGNORE
    return logits[keep], labels[keep]


def token_limit(backbone: Backbone, max_length: int | None) -> int:
    """Tokens per text: the run's --max-length, else the model's own default."""
    return max_length or backbone.input.max_length


class Task(ABC):
    """One kind of problem: how its data is read, what head it needs, how it is scored and predicted."""

    name: ClassVar[str]
    """The --task value."""
    modality: ClassVar[Literal["image", "text"]]
    """Which backbones fit."""
    metric: ClassVar[str] = "accuracy"
    """Name of the model-selection score: the summary's `metric`; each epoch records val_<metric>."""

    @abstractmethod
    def read(self, path: str, classes: tuple[str, ...] | None, config) -> Examples:
        """Labelled examples from a file; with `classes` (training's) an unknown label is a DataError."""

    def load_splits(self, config) -> Splits:
        """Train and validation examples as `config` (a TrainConfig) asks: training from --data, validation from
        --val-data (labels checked against training's) or else split off the training examples by `split`."""
        train = self.read(config.data, None, config)
        if config.val_data is not None:
            return Splits(train, self.read(config.val_data, train.classes, config))
        return self.split(train, config)

    def split(self, train: Examples, config) -> Splits:
        """Hold out --val-fraction of the training examples, stratified by label."""
        return split_examples(train, config.val_fraction, config.seed)

    def adapt(self, backbone: Backbone, num_outputs: int) -> None:
        """Give the backbone the head (and input changes) the task needs, before the strategy is applied."""
        backbone.replace_head(num_outputs)

    def finish(self, plan: Plan) -> Plan:
        """Add what the task trains whatever the strategy (after `Strategy.apply`); the plain head by default."""
        return plan

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
