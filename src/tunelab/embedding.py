"""Any backbone as a feature extractor: one pooled vector per example, with its label and an id.

`embed("mobilenet_v2", "photos/")` or `embed("runs/source", "train.tsv")` reads every example of a labelled
data set (both splits when the data comes split), runs the frozen backbone over it in batches
(`features.extract_features`: eval mode, no augmentation, the model's own preprocessing) and returns the
features of one block, pooled as the head would see them. `tunelab embed ... --out feats.npz` saves them
for a search index, a plot or a scikit-learn model; the .npz holds only arrays, so `np.load` needs no pickle.

Example ids say where each row came from: an image file's path relative to the data folder, `train/17`
for the 18th image of an idx file, `reviews.tsv#4` for the 5th example of a text table.

May import: errors, fileio, models, data, runs (a run directory as `model` works because `tunelab.runs`
registers run directories as a model source).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunelab.data import Examples, read_image_folder, read_image_folder_as, read_text_table
from tunelab.data.idx import find_idx_pair, read_idx
from tunelab.data.images import DEFAULT_MAX_IMAGE_PIXELS, image_pixel_limit
from tunelab.errors import TunelabError
from tunelab.fileio import atomic_write_bytes
from tunelab.models.contract import Backbone
from tunelab.models.zoo import load_backbone
from tunelab.runs.features import extract_features


@dataclass(frozen=True)
class Embeddings:
    """Features of a data set under one model, row i belonging to example ids[i]."""

    features: np.ndarray
    """(N, D) float32: the pooled output of `block` for every example."""
    labels: np.ndarray
    """(N,) int64: index into `classes`."""
    ids: np.ndarray
    """(N,) str: where each example came from (relative file path, idx position, or table row)."""
    classes: tuple[str, ...]
    """Class names; label i is classes[i]."""
    model: str
    """The model the features came from (zoo name, hub name or run directory)."""
    block: int
    """Index of the block whose output was pooled (non-negative)."""
    block_name: str
    """That block's name, e.g. 'neck' or 'layer.5'."""

    def save(self, path: str | Path) -> Path:
        """Write an .npz (features, labels, ids, classes, model, block, block_name) atomically."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            features=self.features,
            labels=self.labels,
            ids=self.ids,
            classes=np.array(self.classes, dtype=str),
            model=np.array(self.model),
            block=np.array(self.block),
            block_name=np.array(self.block_name),
        )
        atomic_write_bytes(path, buffer.getvalue())
        return Path(path)


def embed(
    model: str | Backbone,
    data: str | Path,
    block: int = -1,
    batch_size: int = 64,
    max_length: int | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    progress: bool = True,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Embeddings:
    """Features of every example in `data` under `model` (a name, run directory or loaded Backbone).

    `block` counts like a list index (-1: the last block, what a head sees); `max_length` caps text
    tokens (None: the model's, or for a run directory the length it was trained with); an image that
    decodes to more than `max_image_pixels` pixels is refused before it is decoded.
    """
    backbone = load_backbone(model) if isinstance(model, str) else model
    examples, ids = read_all(Path(data), backbone.modality, text_column, label_column)
    n = len(backbone.blocks)
    if not -n <= block < n:
        names = ", ".join(backbone.block_names)
        raise TunelabError(f"block {block} does not exist: {backbone.name} has {n} blocks (0..{n - 1}: {names})")
    index = block % n
    with image_pixel_limit(max_image_pixels):
        features = extract_features(backbone, examples, [index], batch_size, max_length, progress)[index]
    return Embeddings(
        features=features,
        labels=np.array(examples.labels, dtype=np.int64),
        ids=np.array(ids, dtype=str),
        classes=examples.classes,
        model=backbone.name,
        block=index,
        block_name=backbone.block_names[index],
    )


def read_all(path: Path, modality: str, text_column: str | None, label_column: str) -> tuple[Examples, list[str]]:
    """Every labelled example at `path` (all splits, train first) with an id each, for a model of `modality`."""
    if not path.exists():
        raise TunelabError(f"{path}: no such file or folder")
    if modality == "text":
        if path.is_dir():
            raise TunelabError(f"{path} is a folder, but the model reads text: give a CSV/TSV/JSONL file")
        examples = read_text_table(path, text_column, label_column)
        return examples, [f"{path.name}#{i}" for i in range(len(examples))]
    if not path.is_dir():
        raise TunelabError(
            f"{path} is a file, but the model reads images: give an image folder or a folder of idx files"
        )
    train_idx = find_idx_pair(path, "train")
    if train_idx is not None:
        parts = [("train", read_idx(*train_idx))]
        test_idx = find_idx_pair(path, "t10k")
        if test_idx is not None:
            parts.append(("t10k", read_idx(*test_idx, classes=parts[0][1].classes)))
        return _concat([e for _, e in parts]), [f"{name}/{i}" for name, e in parts for i in range(len(e))]
    has_train = (path / "train").is_dir()
    val = next((path / name for name in ("val", "validation") if has_train and (path / name).is_dir()), None)
    if val is not None:
        train = read_image_folder(path / "train")
        examples = _concat([train, read_image_folder_as(val, train.classes)])
    else:
        examples = read_image_folder(path)
    return examples, [Path(p).relative_to(path).as_posix() for p in examples.inputs]


def _concat(parts: list[Examples]) -> Examples:
    """Examples labelled with the first part's classes, one after the other."""
    first = parts[0]
    inputs = [x for p in parts for x in p.inputs]
    return Examples(inputs, [y for p in parts for y in p.labels], first.classes, first.source)
