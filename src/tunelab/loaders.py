"""From a data path and a backbone to DataLoaders: task inference, splits, transforms, tokenisation, order.

The training order is a pure function of (seed, epoch), not of a generator's history, so a resumed run
visits the examples in exactly the order an uninterrupted run would have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .backbones.contract import Backbone
from .data import (
    Examples, ImageDataset, Splits, TextDataset, image_transform, load_images, load_text, stratified_kfold, stratified_subset,
    text_collate,
)
from .errors import DataError, TunelabError, brief

TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".jsonl"}
TASKS = ("image-classification", "text-classification")


def infer_task(data: str, task: str) -> str:
    """'auto' -> image-classification for a folder, text-classification for a CSV/TSV/JSONL file."""
    if task != "auto":
        return task
    path = Path(data)
    if path.is_dir():
        return "image-classification"
    if path.suffix.lower() in TEXT_SUFFIXES:
        return "text-classification"
    if not path.exists():
        if path.is_symlink():
            raise TunelabError(f"{data}: a symbolic link that leads nowhere (a loop, or its target is gone)")
        raise TunelabError(f"{data}: no such file or folder")
    raise TunelabError(f"{data}: cannot tell the task from this path; give --task ({', '.join(TASKS)})")


def load_splits(task: str, data: str, val_data: str | None, val_fraction: float, seed: int, text_column, label_column) -> Splits:
    """Read the user's data as train/val splits for the task."""
    if not data:
        raise TunelabError("no training data: give --data PATH (an image folder or a CSV/TSV/JSONL file)")
    if task == "image-classification":
        splits = load_images(Path(data), val_fraction=val_fraction, seed=seed, val_path=None if val_data is None else Path(val_data))
    else:
        splits = load_text(
            Path(data), None if val_data is None else Path(val_data), val_fraction, seed, text_column=text_column, label_column=label_column
        )
    if len(splits.train.classes) < 2:
        raise DataError(
            f"every training example has the label '{brief(splits.train.classes[0])}'; a classifier needs at least 2 classes",
            splits.train.source,
        )
    return splits


def select_splits(splits: Splits, folds: int | None, fold: int, train_fraction: float, seed: int) -> Splits:
    """Apply cross-validation and a training-set fraction to loaded splits.

    With `folds`, train and val are pooled and split into stratified folds (the same folds for every
    strategy and fold index under one seed); fold `fold` validates. `train_fraction` then keeps a
    stratified subset of the training side only, so runs at different fractions share one validation set.
    """
    if folds is not None:
        if not 0 <= fold < folds:
            raise TunelabError(f"fold {fold} does not exist: with {folds} folds, fold must be 0..{folds - 1}")
        train, val = splits.train, splits.val
        pool = Examples(train.inputs + val.inputs, train.labels + val.labels, train.classes, train.source)
        train_idx, val_idx = stratified_kfold(pool.labels, folds, seed, classes=pool.classes)[fold]
        splits = Splits(pool.subset(train_idx), pool.subset(val_idx))
    if train_fraction < 1.0:
        if train_fraction <= 0:
            raise TunelabError(f"train_fraction must be in (0, 1], got {train_fraction}")
        splits = Splits(splits.train.subset(stratified_subset(splits.train.labels, train_fraction, seed)), splits.val)
    return splits


def check_modality(task: str, backbone: Backbone) -> None:
    want = "image" if task.startswith("image") else "text"
    if backbone.modality != want:
        raise TunelabError(f"{backbone.name} is a model for {backbone.modality}s but the task is {task}; pick a {want} model (see `tunelab models`)")


def length_order(examples: Examples) -> np.ndarray | None:
    """Indices that sort texts by length (None for images): for passes where order does not matter.

    A batch is padded to its longest text, so evaluating or extracting features in length order skips
    most of the padding a random order pays for (SST-2 dev: about half the tokens). Training keeps its
    shuffled order; only its metrics-only passes use this.
    """
    if not examples.inputs or not isinstance(examples.inputs[0], str):
        return None
    return np.argsort([len(t) for t in examples.inputs], kind="stable")


class EpochShuffle(Sampler[int]):
    """A permutation seeded by (seed, epoch): the same order whether or not the run was interrupted."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


def example_dataset(examples: Examples, backbone: Backbone, train: bool, augment: bool) -> Dataset:
    if backbone.modality == "image":
        return ImageDataset(examples, image_transform(backbone.input, train=train, augment=augment))
    return TextDataset(examples)


def collate_for(backbone: Backbone, max_length: int | None):
    if backbone.modality == "image":
        return None
    return text_collate(backbone.input.tokenizer, max_length or backbone.input.max_length)


def make_loader(dataset: Dataset, batch_size: int, collate, num_workers: int, sampler: Sampler | None = None) -> DataLoader:
    """A loader in dataset order (sampler None) or in the sampler's order."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, collate_fn=collate, num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
