"""The frozen-prefix cache: run the frozen first blocks once, then train only what follows.

A block with nothing to train runs in eval mode (see `set_train_mode`), so without augmentation its
output is a pure function of the input. `none` then costs a head per epoch rather than a backbone, and
`retrain:K` costs only the blocks after K.

Features are stored row-wise in one float32 array: an image feature map is one row, a sentence is one
row per token (unpadded). When every block is frozen and the head starts with a pool (`head_pool`), the
pooled vector is stored instead, as a 1x1 map or a one-token sentence that the head's pool passes through
unchanged: the head trains on exactly what it would have computed, from a cache 49x smaller for a
MobileNetV2 image and about 14x for an SST-2 sentence.

The array lives in memory, or in a memory-mapped file once it would exceed the memory budget, so the cache
never takes more RAM than the user allows.

What the features depend on beyond the frozen weights (the image size and preprocessing, the tokenizer's
max_length) needs no cache key here: this cache is computed by the process that trains, each time a run
starts or resumes, and is never read back from an earlier one (the files in the run's cache/ folder only
spill memory). A resume with another --image-size is refused before any feature is computed
(`runs.identity.check_resume`: image_size is part of a run's settings), so features cached at 224 pixels
never meet a head trained at 160. The one exception is the store that runs of a compare share
(--feature-store, `runs.feature_store`): features read from there are found under a key made of exactly
what they depend on, and are the bits this run would have computed.

May import: errors, fileio, models, tasks, runs.feature_store.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tunelab.errors import TunelabError
from tunelab.fileio import make_folder
from tunelab.models.contract import TokenState, TransferModel
from tunelab.runs.feature_store import Slot, Stored, load, publish
from tunelab.tasks.base import IGNORE


class FeatureStore:
    """Variable-length float32 rows per example, in memory or memory-mapped on disk."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray):
        self.offsets, self.data = offsets, data
        self.row_shape = tuple(data.shape[1:])
        self.nbytes = data.nbytes
        self.on_disk = isinstance(data, np.memmap)

    @classmethod
    def allocate(cls, lengths: list[int], row_shape: tuple[int, ...], budget_mb: float, spill_path: Path):
        """Room for the rows of examples `lengths` long: in memory, or in a file at `spill_path` past the budget."""
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        shape = (int(offsets[-1]), *row_shape)
        if 4 * int(np.prod(shape, dtype=np.int64)) > budget_mb * 2**20:
            return cls(offsets, _spill_file(spill_path, shape))
        return cls(offsets, np.empty(shape, dtype=np.float32))

    def write(self, index: int, rows: torch.Tensor) -> None:
        self.data[self.offsets[index] : self.offsets[index + 1]] = rows.numpy()

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.data[self.offsets[index] : self.offsets[index + 1]]))

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _spill_file(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A float32 .npy file of `shape`, memory-mapped, with its disk space allocated before it is mapped.

    A memory-mapped file is written by touching memory, not by write() calls: a page that finds no free
    disk block cannot return an error, and the kernel ends the process with SIGBUS and no message. numpy
    creates the file sparse (no blocks allocated), so a full disk would surface that way in the middle of
    caching. posix_fallocate reserves every block first: a full disk is then an ordinary ENOSPC here, one
    line for the user, before a single feature is stored.
    """
    make_folder(path.parent)
    try:
        data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        if hasattr(os, "posix_fallocate"):  # POSIX; elsewhere (macOS, Windows) the file stays as numpy made it
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
        path.unlink(missing_ok=True)
        needed = 4 * int(np.prod(shape, dtype=np.int64)) / 2**20
        raise TunelabError(
            f"cannot spill the feature cache to {path} ({needed:,.0f} MB): {e.strerror or e}; free disk space, "
            "raise --cache-memory-mb to keep it in memory, or turn the cache off with --no-cache"
        ) from e
    return data


class CachedFeatures(Dataset):
    """(feature, label) pairs read from a FeatureStore; the feature is what block K receives."""

    def __init__(self, store: FeatureStore, labels: list[int], text: bool):
        self.store, self.labels, self.text = store, labels, text

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        rows = self.store[index]
        return (rows if self.text else rows[0]), self.labels[index]


def collate_features(items: list) -> tuple:
    """Stack image features; pad token features back into a TokenState with its padding mask.

    Per-token labels (token classification) are padded with IGNORE to the same length.
    """
    features, labels = zip(*items)
    if features[0].ndim != 2:
        return torch.stack(features), torch.tensor(labels)
    longest = max(f.shape[0] for f in features)
    if isinstance(labels[0], int):
        labels = torch.tensor(labels)
    else:
        labels = torch.tensor([list(y) + [IGNORE] * (longest - len(y)) for y in labels])
    hidden = torch.zeros(len(features), longest, features[0].shape[1])
    mask = torch.zeros(len(features), longest, dtype=torch.long)
    for i, f in enumerate(features):
        hidden[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = 1
    return TokenState(hidden, mask), labels


def _per_example(output, pool: nn.Module | None) -> list[torch.Tensor]:
    """Split a batch of prefix outputs into per-example row blocks (dropping text padding); with `pool`, each
    example's pooled vector, shaped as one token (text) or a 1x1 map (images) so it pools to itself."""
    if pool is not None:
        pooled = pool(output)
        if isinstance(output, TokenState):
            return [p.unsqueeze(0) for p in pooled]
        return [p.view(1, -1, 1, 1) for p in pooled]
    if isinstance(output, TokenState):
        return [h[m.bool()] for h, m in zip(output.hidden, output.mask)]
    return [o.unsqueeze(0) for o in output]


@torch.no_grad()
def build_cache(
    model: TransferModel,
    stop: int,
    loader: DataLoader,
    labels: list[int],
    budget_mb: float,
    spill_path: Path,
    device: torch.device,
    desc: str,
    shared: Slot | None = None,
    pool: nn.Module | None = None,
) -> CachedFeatures:
    """Run blocks[:stop] over an ordered (unshuffled, unaugmented) loader once and keep the outputs, or with
    `pool` (every block frozen, `head_pool`) their pooled vectors.

    With `shared` (a slot of the store runs share, `runs.feature_store`): read them from there when another
    run has computed them, else compute them and add them there for the next run.
    """
    found = None if shared is None else load(shared, len(labels))
    if found is not None:
        if not shared.quiet:
            print(f"{desc.replace('caching', 'reading cached')} from {shared.path}", file=sys.stderr)
        return CachedFeatures(FeatureStore(found.offsets, found.data), labels, text=found.data.ndim == 2)
    cached = _compute(model, stop, loader, labels, budget_mb, spill_path, device, desc, pool)
    if shared is not None:
        publish(shared, Stored(cached.store.offsets, cached.store.data))
    return cached


@torch.no_grad()
def _compute(model, stop, loader, labels, budget_mb, spill_path, device, desc, pool) -> CachedFeatures:
    """The features computed here: blocks[:stop] in eval mode over the loader (then `pool`, when given), in
    memory or spilled past the budget."""
    frozen = model.blocks[:stop]
    was_training = [b.training for b in frozen]
    frozen.eval()
    store: FeatureStore | None = None
    text = False
    index = 0
    for batch, _ in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        batch = send_to_device(batch, device)
        examples = _per_example(model(batch, stop=stop), pool)
        if store is None:
            text = examples[0].ndim == 2
            lengths = _lengths(loader, examples) if text and pool is None else [1] * len(labels)
            store = FeatureStore.allocate(lengths, tuple(examples[0].shape[1:]), budget_mb, spill_path)
        for rows in examples:
            store.write(index, rows.float().cpu())
            index += 1
    for block, mode in zip(frozen, was_training):
        block.train(mode)
    assert store is not None and index == len(labels), "cache loader must cover every example once, in order"
    return CachedFeatures(store, labels, text)


def _lengths(loader: DataLoader, first: list[torch.Tensor]) -> list[int]:
    """Token counts of every example (text), from the tokenizer's attention masks, without running the model."""
    lengths = []
    for batch, _ in loader:
        lengths += batch["attention_mask"].sum(1).tolist()
    assert lengths[: len(first)] == [f.shape[0] for f in first]
    return lengths
