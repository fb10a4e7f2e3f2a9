"""What the data looks like before any model sees it: class balance, image sizes or text lengths, a sample.

Cheap by design (file headers only, nothing decoded), so `advise` can describe a data set of any size.
`DataProfile` is part of what `decide` reads, so this module loads no torch: `Examples` (whose package
does) is imported for type hints only.

May import: numpy, PIL, and tunelab.data for type hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from tunelab.data.examples import Examples


@dataclass(frozen=True)
class DataProfile:
    """What the data looks like before any model sees it."""

    modality: str
    """'image' or 'text'."""
    n: int
    """Examples in all (train and validation pooled)."""
    classes: int
    """Number of classes."""
    class_counts: dict[str, int]
    """Examples per class, by class name."""
    per_class_min: int
    """Examples in the smallest class."""
    per_class_median: float
    """Median examples per class: what decides small vs large."""
    per_class_max: int
    """Examples in the largest class."""
    imbalance: float
    """Largest class size / smallest class size."""
    image_sizes: dict[str, list[int]] | None = None
    """Images: 'width' and 'height' as [min, median, max] over a sample of files (headers only)."""
    text_chars: list[float] | None = None
    """Texts: length in characters as [min, median, max]."""
    unit: str = "examples"
    """What the class counts count: 'examples', or 'words' for token classification (a tag per word)."""


def profile(examples: Examples, sample_images: int = 50, seed: int = 0) -> DataProfile:
    """Class balance, and image sizes (from ~`sample_images` file headers, nothing decoded) or text lengths."""
    counts = np.bincount(flat_labels(examples.labels), minlength=len(examples.classes))
    image_sizes = text_chars = None
    words = bool(examples.inputs) and isinstance(examples.inputs[0], (list, tuple))
    texts = [" ".join(x) if words else x for x in examples.inputs if words or isinstance(x, str)]
    if texts:
        lengths = np.array([len(t) for t in texts], dtype=np.float64)
        text_chars = [float(lengths.min()), float(np.median(lengths)), float(lengths.max())]
    else:
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(len(examples))[:sample_images]
        sizes = [s for s in (_image_size(examples.inputs[i]) for i in chosen) if s is not None]
        if sizes:
            w, h = np.array(sizes).T
            image_sizes = {"width": _spread(w), "height": _spread(h)}
    named = {name: int(c) for name, c in zip(examples.classes, counts)}
    if words:  # a tag scheme lists tags the data may never use (I-LOC without a two-word place): not a class here
        counts = counts[counts > 0]
    return DataProfile(
        modality="text" if texts else "image",
        n=len(examples),
        classes=len(counts),
        class_counts=named,
        per_class_min=int(counts.min()),
        per_class_median=float(np.median(counts)),
        per_class_max=int(counts.max()),
        imbalance=float(counts.max() / max(counts.min(), 1)),
        image_sizes=image_sizes,
        text_chars=text_chars,
        unit="words" if words else "examples",
    )


def flat_labels(labels: list) -> np.ndarray:
    """Class indices of every labelled unit: the examples, or each word of each sentence (token classification)."""
    if labels and isinstance(labels[0], (list, tuple)):
        return np.asarray([t for tags in labels for t in tags], dtype=np.int64)
    return np.asarray(labels, dtype=np.int64)


def _spread(values: np.ndarray) -> list[int]:
    return [int(values.min()), int(np.median(values)), int(values.max())]


def _image_size(item) -> tuple[int, int] | None:
    if isinstance(item, np.ndarray):
        return int(item.shape[1]), int(item.shape[0])
    try:
        with Image.open(Path(item)) as im:  # reads the header only
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # a bad file is reported where it is decoded, with its path


def stratified_sample(labels: list[int], max_examples: int, seed: int = 0) -> list[int]:
    """Sorted indices of at most `max_examples` examples, classes in proportion but at least 2 each.

    (With more than max_examples / 2 classes the minimum wins and the sample is larger.)
    """
    y = np.asarray(labels, dtype=np.int64)
    if len(y) <= max_examples:
        return list(range(len(y)))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    members = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    share = {c: len(members[c]) * max_examples / len(y) for c in classes}
    quota = {c: min(len(members[c]), max(2, int(share[c]))) for c in classes}
    while sum(quota.values()) > max_examples and max(quota.values()) > 2:  # minimums pushed us over
        quota[max(quota, key=quota.get)] -= 1
    for c in sorted(classes, key=lambda c: share[c] - int(share[c]), reverse=True):
        if sum(quota.values()) >= max_examples:
            break
        if quota[c] < len(members[c]):
            quota[c] += 1
    return sorted(int(i) for c in classes for i in members[c][: quota[c]])
