"""From a data path and a backbone to DataLoaders: task inference, splits, transforms, tokenisation, order.

The training order is a pure function of (seed, epoch), not of a generator's history, so a resumed run
visits the examples in exactly the order an uninterrupted run would have. Text passes that only measure
(validation, test, eval, predict) run shortest first, and --length-grouping batches training texts of
similar length (`LengthGroupedShuffle`): both cut the padding a batch of random lengths pays for.

May import: errors, models, data, tasks.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tunelab.data import Examples, Splits, stratified_kfold, stratified_subset
from tunelab.data.class_names import check_class_names, name_classes
from tunelab.data.splits import split_test_examples
from tunelab.errors import DataError, TunelabError, brief
from tunelab.models.contract import Backbone
from tunelab.tasks import get_task
from tunelab.tasks import infer_task as infer_task_of_data


def infer_task(data: str, task: str) -> str:
    """'auto' -> the task the data implies (see `tasks.infer_task`); any other value is checked and kept."""
    return infer_task_of_data(data, task)


def load_splits(
    task: str, data: str, val_data: str | None, val_fraction: float, seed: int, text_column, label_column
) -> Splits:
    """Read the user's data as train/val splits for the task (no test set: see `load_sets`)."""
    config = SimpleNamespace(
        data=data,
        val_data=val_data,
        val_fraction=val_fraction,
        seed=seed,
        text_column=text_column,
        label_column=label_column,
        test_data=None,
        test_fraction=None,
        class_names=None,
    )
    return load_sets(task, config)[0]


def load_sets(task: str, config) -> tuple[Splits, Examples | None]:
    """The train/val splits and the test set (None without one) that `config` (a TrainConfig) asks for.

    The test set comes first: --test-data read with the training classes (an unknown label is a DataError at
    its line), or --test-fraction held out of the training examples with a seed of its own
    (`data.splits.TEST_SEED`), so it is the same for every seed, strategy and fold. Only then is validation
    split off what is left (when no validation data was given), so test examples never train or select.
    """
    if not config.data:
        raise TunelabError(
            "no training data: give --data PATH (an image folder, a text table, a CoNLL or a relation file)"
        )
    _check_test_data(config)
    kind = get_task(task)
    if config.class_names is not None:  # refused before reading: for an image folder, or a repeated name
        check_class_names(config.class_names, task, kind.modality)
    train, val = kind.read_sets(config)
    test = None
    if config.test_data is not None:
        test = kind.read(config.test_data, train.classes, config)
    elif config.test_fraction is not None:
        train, test = split_test_examples(train, config.test_fraction, _strata(train.labels))
    if config.class_names is not None:  # label i is class_names[i] from here on (`data.class_names`)
        names = config.class_names
        train = name_classes(train, names, training=True)
        val = None if val is None else name_classes(val, names, training=False)
        test = None if test is None else name_classes(test, names, training=False)
    splits = Splits(train, val) if val is not None else kind.split(train, config)
    if len(splits.train.classes) < 2:
        raise DataError(
            f"every training example has the label '{brief(splits.train.classes[0])}'; "
            "a classifier needs at least 2 classes",
            splits.train.source,
        )
    return splits, test


def _check_test_data(config) -> None:
    """Refuse a test file that is the training or validation data: its score would not be a test score."""
    if config.test_data is None:
        return
    test = Path(config.test_data).resolve()
    for name, other in (("data", config.data), ("val_data", config.val_data)):
        if other is not None and Path(other).resolve() == test:
            raise TunelabError(
                f"test_data is the same path as {name} ({config.test_data}): a test set must be held out of "
                "training and validation; give another file, or test_fraction to hold part of the data out"
            )


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
        train_idx, val_idx = stratified_kfold(_strata(pool.labels), folds, seed, classes=pool.classes)[fold]
        splits = Splits(pool.subset(train_idx), pool.subset(val_idx))
    if train_fraction < 1.0:
        if train_fraction <= 0:
            raise TunelabError(f"train_fraction must be in (0, 1], got {train_fraction}")
        kept = stratified_subset(_strata(splits.train.labels), train_fraction, seed)
        splits = Splits(splits.train.subset(kept), splits.val)
    return splits


def _strata(labels: list) -> list[int]:
    """The labels to stratify by: the class of a single-label example; one stratum for tagged sentences."""
    return [label if isinstance(label, int) else 0 for label in labels]


def length_order(examples: Examples) -> np.ndarray | None:
    """Indices that sort texts by character length (None for images): the cheap proxy, no tokenizer needed.

    For callers without a backbone at hand; with one, `token_order` sorts by what the model actually receives.
    """
    if not examples.inputs or not isinstance(examples.inputs[0], str):
        return None
    return np.argsort([len(t) for t in examples.inputs], kind="stable")


def token_counts(
    examples: Examples, backbone: Backbone, task: str | None = None, max_length: int | None = None
) -> np.ndarray | None:
    """Tokens per example as a batch of the task pads it (None for images): one tokenizer pass, no model.

    Read from the task's own dataset and collate (each batch's attention mask), so the count is exactly what
    the model receives after truncation, special tokens and entity markers, for every text task (sentences,
    tagged words, marked relations). A character count is a poor stand-in on short text: sorted by characters,
    the benchmarks' 1000 SST-2 sentences (13.8k tokens) come to 17.6k tokens in batches of 16, sorted by tokens
    to 14.3k. The pass is cheap: MiniLM's fast tokenizer counts those sentences in 0.04-0.13 s.
    """
    if backbone.modality != "text":
        return None
    dataset = example_dataset(examples, backbone, train=False, augment=False, task=task, max_length=max_length)
    counts = [np.zeros(0, dtype=np.int64)]
    for batch, _ in make_loader(dataset, 1024, collate_for(backbone, max_length, task), 0):
        counts.append(batch["attention_mask"].sum(1).numpy())
    return np.concatenate(counts)


def token_order(
    examples: Examples, backbone: Backbone, task: str | None = None, max_length: int | None = None
) -> np.ndarray | None:
    """Indices that sort texts by token count, shortest first (None for images): for passes that only measure.

    A batch is padded to its longest text, so evaluating or predicting in this order skips nearly all the
    padding a random order pays for (1000 SST-2 sentences at batch 16: 62% of the tokens are padding in a
    random order, 3% in this one). Training keeps its shuffled order (see `LengthGroupedShuffle`).
    """
    counts = token_counts(examples, backbone, task, max_length)
    return None if counts is None else np.argsort(counts, kind="stable")


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator an epoch's order is drawn from: a function of (seed, epoch) alone."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class EpochShuffle(Sampler[int]):
    """A permutation seeded by (seed, epoch): the same order whether or not the run was interrupted."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=_epoch_generator(self.seed, self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


MEGA_BATCHES = 50
"""Batches per mega-batch (fewer on small data: at least 4 mega-batches), as `transformers`' `group_by_length`."""


def mega_batch_size(n: int, batch_size: int) -> int:
    """Examples per mega-batch: `MEGA_BATCHES` batches, or fewer so a small set still has 4 mega-batches.

    The rule of `transformers`' LengthGroupedSampler (min(n // (4 x batch), 50) batches, at least 1), so a
    run with --length-grouping draws its batches from as much randomness as `Trainer`'s group_by_length.
    A larger mega-batch groups lengths more tightly (1000 SST-2 sentences, 13.8k tokens, batch 16: batches
    of 14.8k tokens with padding at 50 batches per mega-batch, 16.1k with the rule's 15, 36.9k in random
    batches) at the cost of that randomness.
    """
    return batch_size * max(1, min(n // (4 * batch_size), MEGA_BATCHES))


class LengthGroupedShuffle(Sampler[int]):
    """Batches of similar length in a random order, seeded by (seed, epoch): --length-grouping.

    Each epoch: the permutation `EpochShuffle` would give, cut into mega-batches (`mega_batch_size`), each
    sorted by length, longest first, and cut into batches; then the full batches are shuffled (so an epoch
    does not run long-to-short inside every mega-batch) and the one short batch, if any, comes last. The
    DataLoader's BatchSampler cuts this flat order into exactly these batches, because a mega-batch is a
    whole number of batches; accelerate shards whole batches across processes, so every process gets
    grouped batches too. Every example comes once per epoch, and a resumed run repeats the uninterrupted
    order (the epoch is set by the loop, as for `EpochShuffle`).
    """

    def __init__(self, lengths, batch_size: int, seed: int):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        """This epoch's example indices, batch after batch."""
        n, size = len(self.lengths), self.batch_size
        generator = _epoch_generator(self.seed, self.epoch)
        shuffled = torch.randperm(n, generator=generator).numpy()
        mega = mega_batch_size(n, size)
        pieces = [shuffled[i : i + mega] for i in range(0, n, mega)]
        flat = np.concatenate([p[np.argsort(-self.lengths[p], kind="stable")] for p in pieces] or [shuffled])
        full = n // size
        batches = flat[: full * size].reshape(full, size)[torch.randperm(full, generator=generator).numpy()]
        return np.concatenate([batches.reshape(-1), flat[full * size :]]).tolist()

    def __iter__(self):
        return iter(self.order())

    def __len__(self) -> int:
        return len(self.lengths)


def train_sampler(examples: Examples, backbone: Backbone, config) -> Sampler:
    """The training order `config` (a TrainConfig) asks for: length-grouped batches for text with
    length_grouping, else a plain (seed, epoch) shuffle. Images have no length: the flag is ignored for them
    (`runs.job.build_feed` warns).

    The lengths are the raw training examples' token counts (`token_counts`), also when the run trains on
    cached features: the cache keeps every example's tokens, so its batches pad to the same lengths.
    """
    counts = token_counts(examples, backbone, config.task, config.max_length) if config.length_grouping else None
    if counts is None:
        return EpochShuffle(len(examples), config.seed)
    return LengthGroupedShuffle(counts, config.batch_size, config.seed)


def example_dataset(
    examples: Examples,
    backbone: Backbone,
    train: bool,
    augment: bool | str,
    task: str | None = None,
    max_length: int | None = None,
) -> Dataset:
    """The task's dataset (default: single-label classification in the backbone's modality).

    `augment` is False, True, or the name of an augmentation preset (`data.transforms.AUGMENTATIONS`)."""
    return _task(backbone, task).dataset(examples, backbone, train, augment, max_length)


def collate_for(backbone: Backbone, max_length: int | None, task: str | None = None):
    """The task's collate_fn (default: single-label classification in the backbone's modality)."""
    return _task(backbone, task).collate(backbone, max_length)


def _task(backbone: Backbone, task: str | None):
    return get_task(task or f"{backbone.modality}-classification")


def make_loader(
    dataset: Dataset, batch_size: int, collate, num_workers: int, sampler: Sampler | None = None
) -> DataLoader:
    """A loader in dataset order (sampler None) or in the sampler's order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
