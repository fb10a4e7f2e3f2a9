"""The in-memory form every reader returns: inputs, integer labels and the class names they index.

Readers only *locate* data (file paths, strings, small arrays); decoding and tokenising happen later in
the datasets, so reading a folder of thousands of images stays fast and a bad file fails where it is used
with its own path in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Examples:
    """A labelled list of inputs read from one place."""

    inputs: list[Any]
    """Image file Paths, text strings, or (idx format) uint8 numpy arrays of shape HxW."""
    labels: list[int]
    """Index into `classes` for each input; same length as `inputs`."""
    classes: tuple[str, ...]
    """Class names; label i means classes[i]. Shared between the train and val split of a data set."""
    source: str
    """Where the examples were read from (a path), so messages and reports can name it."""

    def __post_init__(self) -> None:
        # A mismatch here is a bug in a reader, not a user error, so a plain ValueError is right.
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices: Sequence[int]) -> Examples:
        """The examples at `indices`, in that order, keeping the class list so labels stay comparable."""
        idx = [int(i) for i in indices]
        return Examples(
            inputs=[self.inputs[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            classes=self.classes,
            source=self.source,
        )


@dataclass(frozen=True)
class Splits:
    """A training set and the validation set that measures it, sharing one class list."""

    train: Examples
    """Examples the model is fitted on."""
    val: Examples
    """Held-out examples for model selection; its labels index the same `classes` as `train`."""
