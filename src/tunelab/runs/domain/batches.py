"""DANN's training batches: each holds its source examples, then as many unlabelled target examples.

The source order is the run's own (`runs.loaders.train_sampler`, seeded by (seed, epoch)); the target
examples are paired with it from an order seeded by (seed, epoch) too, so a resumed run pairs exactly as
the uninterrupted one. Both halves go through the source collate together, so text pads to one length
and a per-token batch has one (B, T) shape; only the source rows' labels leave the collate.

May import: torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Sampler, default_collate

TARGET_SEED = 104_729
"""Offsets the target order's random stream from the source order's (both seeded by (seed, epoch))."""


class WithTarget(Sampler):
    """(source index, target index) pairs: the source order from `source` (seeded by (seed, epoch)), each
    index paired with the next of a target order seeded by (seed, epoch) too, drawn again whenever the target
    set runs out. A resumed run therefore pairs exactly as the uninterrupted one."""

    def __init__(self, source: Sampler, targets: int, seed: int):
        self.source, self.targets, self.seed, self.epoch = source, targets, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.source.set_epoch(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + TARGET_SEED)
        order: list[int] = []
        for i in self.source:
            if not order:
                order = torch.randperm(self.targets, generator=generator).tolist()[::-1]
            yield i, order.pop()

    def __len__(self) -> int:
        return len(self.source)


class Paired(Dataset):
    """Items (source item, target item), indexed by the pairs `WithTarget` draws."""

    def __init__(self, source: Dataset, target: Dataset):
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, pair: tuple[int, int]):
        i, j = pair
        return self.source[i], self.target[j]


class PairedCollate:
    """One batch of the source items followed by the target items (the source collate over both, so text
    pads to one length); the labels are the source rows' only. A class, so DataLoader workers can pickle it."""

    def __init__(self, collate):
        self.collate = collate or default_collate

    def __call__(self, items: list) -> tuple[Any, torch.Tensor]:
        sources = [s for s, _ in items]
        inputs, labels = self.collate(sources + [t for _, t in items])
        return inputs, labels[: len(sources)]
