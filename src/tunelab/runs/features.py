"""Frozen features of a backbone at any of its blocks, one vector per example, from a single forward pass.

`advise` scores transferability on these (LogME per block, nearest-centroid accuracy), so they must be
what a frozen backbone really computes: eval mode (BatchNorm statistics fixed, no dropout), no gradients,
no augmentation, the preprocessing the model expects. Blocks are run one at a time with
`model(x, start=i, stop=i + 1)`, so the outputs of several blocks are collected in the same pass that
reaches the last requested one, and blocks after it are never run.

Several backbones that take the same input (a pretrained model and its random-init control) can share
one pass over the data with `extract_many`: images are decoded and texts tokenised once.

Texts are run in order of length (`loaders.length_order`) and the rows put back afterwards.

Token classification has no vector per example but one per labelled word: `extract_token_rows` returns
each tagged word's first sub-token, the position its tag sits on in training, with the tags as labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from accelerate.utils import send_to_device
from tqdm.auto import tqdm

from tunelab.data.examples import Examples
from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone, TokenState, masked_mean
from tunelab.runs.loaders import collate_for, example_dataset, length_order, make_loader
from tunelab.tasks.base import IGNORE


def pooled(x) -> torch.Tensor:
    """One vector per example from a block output.

    CNN maps (N, C, H, W) -> global average pool (N, C), what a classification head sees; a TokenState ->
    mean over real tokens (padding masked out), the pooling sentence-transformers and our text head use;
    (N, T, D) without a mask -> mean over T; (N, D) as it is.
    """
    if isinstance(x, TokenState):
        return masked_mean(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"cannot pool a block output of type {type(x).__name__}")
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    if x.ndim == 2:
        return x
    raise TypeError(f"cannot pool a block output of shape {tuple(x.shape)}")


def _block_indices(backbone: Backbone, blocks: Sequence[int] | None) -> list[int]:
    """Requested blocks as sorted non-negative indices (negative ones count from the end, like lists)."""
    n = len(backbone.blocks)
    if blocks is None:
        return [n - 1]
    out = set()
    for b in blocks:
        if not -n <= int(b) < n:
            names = ", ".join(backbone.block_names)
            raise TunelabError(f"block {b} does not exist: {backbone.name} has {n} blocks (0..{n - 1}: {names})")
        out.add(int(b) % n)
    if not out:
        raise TunelabError("no blocks requested; give at least one block index")
    return sorted(out)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _tagged_rows(state: TokenState, tagged: torch.Tensor) -> torch.Tensor:
    """The hidden states at the tagged positions (each word's first sub-token), one row each."""
    return state.hidden[tagged.to(state.hidden.device)]


def _run(backbone: Backbone, batch, wanted: list[int], reduce=pooled) -> dict[int, torch.Tensor]:
    """Outputs of the wanted blocks for one batch, reduced to rows (default: `pooled`); any failure becomes
    a TunelabError naming the model and the block."""
    model = backbone.model
    device = next(model.parameters()).device
    x = send_to_device(batch, device)
    out = {}
    for i in range(wanted[-1] + 1):
        try:
            x = model(x, start=i, stop=i + 1)
            if i in wanted:
                out[i] = reduce(x).float().cpu()
        except Exception as e:  # a user's model (hub, local folder) can fail in any way; name it and the block
            where = f"{backbone.name}: block {i} ({backbone.block_names[i]})"
            raise TunelabError(f"cannot extract features from {where} failed with {_first_line(e)}") from e
    return out


def extract_many(
    requests: Sequence[tuple[Backbone, Sequence[int] | None]],
    examples: Examples,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = True,
) -> list[dict[int, np.ndarray]]:
    """`extract_features` for several backbones in one pass over the data (one input pipeline, decoded once).

    All backbones must take the same input as the first one (same image preprocessing, or the same
    tokenizer), e.g. a pretrained model and the same architecture with random weights.
    """
    return _extract(requests, examples, batch_size, max_length, progress)[0]


def extract_token_rows(
    requests: Sequence[tuple[Backbone, Sequence[int] | None]],
    examples: Examples,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = True,
) -> tuple[list[dict[int, np.ndarray]], np.ndarray]:
    """`extract_many` for token classification: one row per tagged word (its first sub-token), and the tags.

    Returns (features per backbone per block, tag index per row). Words cut off by `max_length` have no
    row. Rows come sentence by sentence in the (length-sorted) order of the pass: keep them with their tags.
    """
    return _extract(requests, examples, batch_size, max_length, progress, task="token-classification")


def _extract(requests, examples, batch_size, max_length, progress, task=None):
    """One pass of every backbone over `examples`: (features per backbone per block, row labels or None)."""
    if not requests:
        return [], None
    first = requests[0][0]
    for other, _ in requests[1:]:
        if other.modality != first.modality or (first.modality == "image" and other.input != first.input):
            raise TunelabError(f"{other.name} and {first.name} take different inputs; extract features separately")
    wanted = [_block_indices(bb, blocks) for bb, blocks in requests]
    order = length_order(examples)
    restore = None if order is None else np.argsort(order)  # row i of the sorted pass -> back to position
    if order is not None:
        examples = examples.subset(order)
    dataset = example_dataset(examples, first, train=False, augment=False, task=task, max_length=max_length)
    loader = make_loader(dataset, batch_size, collate_for(first, max_length, task), num_workers=0)
    tokens = task == "token-classification"
    row_labels: list[torch.Tensor] = []
    modes = [[m.training for m in bb.model.modules()] for bb, _ in requests]
    for bb, _ in requests:
        bb.model.eval()
    parts: list[dict[int, list[torch.Tensor]]] = [{i: [] for i in w} for w in wanted]
    try:
        with torch.no_grad():
            bar = tqdm(loader, desc=f"features of {first.name}", disable=not progress, leave=False, dynamic_ncols=True)
            for batch, labels in bar:
                reduce = pooled
                if tokens:
                    tagged = labels != IGNORE
                    row_labels.append(labels[tagged])
                    reduce = partial(_tagged_rows, tagged=tagged)
                for (bb, _), w, store in zip(requests, wanted, parts):
                    for i, v in _run(bb, batch, w, reduce).items():
                        store[i].append(v)
    finally:
        for (bb, _), saved in zip(requests, modes):
            for module, mode in zip(bb.model.modules(), saved):
                module.train(mode)
    results = []
    for (bb, _), store in zip(requests, parts):
        empty = np.zeros((0, 0), np.float32)
        arrays = {i: torch.cat(c).numpy().astype(np.float32) if c else empty for i, c in store.items()}
        if restore is not None and not tokens:
            arrays = {i: a[restore] if len(a) else a for i, a in arrays.items()}
        for i, a in arrays.items():
            if not np.isfinite(a).all():
                where = f"block {i} ({bb.block_names[i]})"
                raise TunelabError(f"cannot extract features from {bb.name}: {where} produced NaN or infinite values")
        results.append(arrays)
    return results, (torch.cat(row_labels).numpy() if tokens and row_labels else None)


def extract_features(
    backbone: Backbone,
    examples: Examples,
    blocks: list[int] | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Frozen, pooled features after each requested block: {block index: float32 array (N, D_block)}.

    `blocks` defaults to the last block only (what a head on the frozen backbone sees, before pooling).
    Rows follow `examples` order. The model is put in eval mode for the pass and restored afterwards;
    inputs go to the device the model's parameters are on. `max_length` caps text tokens (None: the
    model's default).
    """
    return extract_many([(backbone, blocks)], examples, batch_size, max_length, progress)[0]
