"""Torch datasets over `Examples`, and the collate function that tokenises a text batch.

Images are decoded lazily in `__getitem__`, so DataLoader workers share the work and memory holds only
paths. Text is tokenised per batch rather than up front, so padding is to the longest text in the
batch instead of to `max_length`, which is much faster for short sentences like SST-2's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from tunelab.data.examples import Examples
from tunelab.data.images import current_pixel_limit, load_image
from tunelab.data.text import clip_text

BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids")
"""Tokenizer outputs passed to the model; token_type_ids only when the tokenizer makes them."""


class ImageDataset(Dataset):
    """(image tensor, label) pairs: files are read with `load_image`, arrays (idx data) used as they are.

    The pixel limit is fixed when the dataset is made (default: the one in force, see
    `data.images.image_pixel_limit`) and travels with it into DataLoader worker processes.
    """

    def __init__(self, examples: Examples, transform: Callable[[Any], torch.Tensor], pixel_limit: int | None = None):
        self.examples = examples
        self.transform = transform
        self.pixel_limit = current_pixel_limit() if pixel_limit is None else pixel_limit

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.examples.inputs[index]
        image = load_image(item, pixel_limit=self.pixel_limit) if isinstance(item, (str, Path)) else item
        return self.transform(image), self.examples.labels[index]

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; label i is classes[i]."""
        return self.examples.classes

    @property
    def labels(self) -> list[int]:
        """Every item's label, in order (what a feature cache stores beside the features)."""
        return self.examples.labels


class TextDataset(Dataset):
    """(text, label) pairs; tokenisation happens in `text_collate` so batches pad only as needed."""

    def __init__(self, examples: Examples):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.examples.inputs[index], self.examples.labels[index]

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; label i is classes[i]."""
        return self.examples.classes

    @property
    def labels(self) -> list[int]:
        """Every item's label, in order (what a feature cache stores beside the features)."""
        return self.examples.labels


@dataclass(frozen=True)
class TextCollate:
    """A DataLoader collate_fn; a class rather than a closure so worker processes can pickle it."""

    tokenizer: Any
    """Hugging Face tokenizer called on a list of texts."""
    max_length: int
    """Texts are truncated to this many tokens (and cut to max_length x CHARS_PER_TOKEN characters before)."""

    def __call__(self, batch: Sequence[tuple[str, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts = [clip_text(text, self.max_length) for text, _ in batch]
        labels = torch.tensor([label for _, label in batch], dtype=torch.long)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return {key: encoded[key] for key in BATCH_KEYS if key in encoded}, labels


def text_collate(tokenizer: Any, max_length: int) -> TextCollate:
    """A DataLoader collate_fn turning (text, label) pairs into (tokenised batch dict, labels tensor).

    Texts are truncated to `max_length` tokens and padded to the longest in the batch; each is first cut to
    max_length x CHARS_PER_TOKEN characters (`data.text.clip_text`), so a megabyte-long line costs no more
    than one that just fills max_length.
    """
    return TextCollate(tokenizer, max_length)
