"""Image and sentence classification: one label per input, scored by accuracy (macro-F1 alongside)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.data import (
    Examples,
    ImageDataset,
    TextDataset,
    image_transform,
    read_image_folder_as,
    read_text_table,
)
from tunelab.data.datasets import text_collate
from tunelab.data.images import read_image_sets
from tunelab.errors import TunelabError
from tunelab.tasks.base import Task, task_loss, token_limit
from tunelab.tasks.metrics import accuracy, classification_report, macro_f1, top_k


@dataclass(frozen=True)
class TopLabels:
    """The most probable labels for one input."""

    input: str
    """The image path or text line."""
    labels: list[tuple[str, float]]
    """(class, probability), most probable first."""

    def format(self) -> str:
        return self.input + "\t" + "  ".join(f"{c} {q:.3f}" for c, q in self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "labels": [{"label": c, "probability": q} for c, q in self.labels]}


class Classification(Task):
    """Shared by image and sentence classification: everything but reading and batching."""

    def scorer(self, examples, backbone, max_length):
        num_classes = len(examples.classes)

        def score(logits: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
            predictions = logits.argmax(-1).numpy()
            return {"accuracy": accuracy(labels, predictions), "macro_f1": macro_f1(labels, predictions, num_classes)}

        return score

    def report(self, examples, backbone, max_length, logits, labels):
        loss = float(task_loss(logits, torch.from_numpy(labels)))
        return classification_report(labels, logits.argmax(-1).numpy(), examples.classes, loss=loss)

    def predictions(self, items, examples, backbone, max_length, logits, classes, k):
        ranked = top_k(logits.softmax(-1).numpy(), classes, k)
        return [TopLabels(str(item), labels) for item, labels in zip(items, ranked)]


class ImageClassification(Classification):
    """An image folder (class per subfolder) or idx files -> one class per image."""

    name = "image-classification"
    modality = "image"

    def read(self, path, classes, config):
        return read_image_folder_as(Path(path), classes)

    def read_sets(self, config) -> tuple[Examples, Examples | None]:
        """The image layouts `data.images.read_image_sets` recognises (train/val folders, idx files, one tree)."""
        val = None if config.val_data is None else Path(config.val_data)
        return read_image_sets(Path(config.data), val)

    def dataset(self, examples, backbone, train, augment, max_length):
        return ImageDataset(examples, image_transform(backbone.input, train=train, augment=augment))

    def collate(self, backbone, max_length):
        return None

    def inputs(self, items, classes):
        missing = [p for p in items if not Path(p).is_file()]
        if missing:
            raise TunelabError(f"{missing[0]}: no such image file")
        return Examples([Path(p) for p in items], [0] * len(items), classes, "command line")


class TextClassification(Classification):
    """A CSV/TSV/JSONL table with a text and a label column -> one class per text."""

    name = "text-classification"
    modality = "text"

    def read(self, path, classes, config):
        return read_text_table(Path(path), config.text_column, config.label_column, classes=classes)

    def dataset(self, examples, backbone, train, augment, max_length):
        return TextDataset(examples)

    def collate(self, backbone, max_length):
        return text_collate(backbone.input.tokenizer, token_limit(backbone, max_length))

    def inputs(self, items, classes):
        return Examples(list(items), [0] * len(items), classes, "command line")
