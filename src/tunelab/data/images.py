"""Image data on disk: class-per-folder trees, idx files, and decoding one image safely.

Reading a tree only lists file paths (no decoding), so a folder of thousands of photos is ready at once;
images are decoded one at a time by `load_image` when the dataset asks for them, and a bad file then
fails with its own path instead of somewhere inside a batch.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tunelab.data.examples import Examples, Splits
from tunelab.data.idx import find_idx_pair, read_idx
from tunelab.data.splits import split_examples
from tunelab.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""File name endings (compared case-insensitively) that count as images; other files are ignored."""

MAX_DECODE_PIXELS = 16384 * 16384
"""Refuse to decode more pixels than this (~800 MB as RGB); JPEGs are first reduced while decoding."""

_RESAMPLABLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBa", "CMYK", "I", "F"})
"""Modes Pillow can shrink directly; others (palette, 1-bit, 16-bit) are converted to RGB first."""

_OPEN_LOCK = threading.Lock()
"""Serialises the rare re-open with Pillow's bomb limit lifted, so concurrent re-opens restore it correctly."""


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _inode(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _class_images(folder: Path, blocked: set[tuple[int, int]]) -> list[Path]:
    """Image files anywhere below `folder`, sorted; follows symlinks but visits each real folder once.

    `blocked` holds the root and the other class folders: a link back to them would otherwise pull
    another class's images in under this class's label.
    """
    found: list[Path] = []
    seen = set(blocked)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        key = _inode(dirpath)
        if key in seen:
            # A symlink loop (or a second link to a folder already read): do not descend again.
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in filenames:
            if not _is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _check_folder(root: Path) -> None:
    if not root.exists():
        if root.is_symlink():
            raise DataError("a symbolic link that leads nowhere (a loop, or its target is gone)", root)
        raise DataError("folder not found; pass a folder with one subfolder of images per class", root)
    if not root.is_dir():
        raise DataError("not a folder; pass a folder with one subfolder of images per class", root)


def _scan_image_folder(root: Path, min_classes: int) -> Examples:
    _check_folder(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name))
    if not class_dirs:
        raise DataError("no class folders found; expected <folder>/<class name>/<image files>", root)
    inputs: list[Path] = []
    labels: list[int] = []
    inodes = {class_dir: _inode(class_dir) for class_dir in class_dirs}
    for label, class_dir in enumerate(class_dirs):
        blocked = {_inode(root)} | {key for other, key in inodes.items() if other != class_dir}
        files = _class_images(class_dir, blocked)
        if not files:
            raise DataError(
                f"class folder '{class_dir.name}' holds no images ({' '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder",
                class_dir,
            )
        inputs.extend(files)
        labels.extend([label] * len(files))
    if len(class_dirs) < min_classes:
        raise DataError(
            f"found {len(class_dirs)} class folder ('{class_dirs[0].name}'); a classifier needs at least "
            f"{min_classes}: add one subfolder of images per class",
            root,
        )
    return Examples(inputs, labels, tuple(p.name for p in class_dirs), str(root))


def read_image_folder(root: Path) -> Examples:
    """Read an ImageFolder tree: one subfolder per class (sorted by name), images anywhere below it.

    Hidden files and folders are skipped (e.g. `.DS_Store`, `.ipynb_checkpoints`), as are files whose
    extension is not in `IMAGE_EXTENSIONS`. Images are not decoded here; see `load_image`.
    """
    return _scan_image_folder(Path(root), min_classes=2)


def _open(path: Path) -> Image.Image:
    """Open lazily (header only); a huge image is allowed through because `load_image` reduces it."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        with _OPEN_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; 16-bit and float images are rescaled instead of clipped to white."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16"):
        im = Image.fromarray((np.asarray(im, dtype=np.float32) / 257.0).round().astype(np.uint8))
    elif im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        low, high = float(arr.min()), float(arr.max())
        scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
        im = Image.fromarray(scaled.round().astype(np.uint8))
    elif im.mode == "P" and "transparency" in im.info:
        # Converting straight to RGB makes Pillow warn; going through RGBA is what it asks for.
        im = im.convert("RGBA")
    return im.convert("RGB")


def load_image(path: Path, max_pixels: int = 4096 * 4096) -> Image.Image:
    """Decode one image file to an RGB PIL image, reducing images larger than `max_pixels`.

    Grayscale, RGBA, palette (GIF) and 16-bit images all come back as RGB. A JPEG over the limit is
    decoded at 1/2, 1/4 or 1/8 scale (`Image.draft`), so a 20000x20000 photo never needs its full-size
    buffer; other formats are decoded then shrunk, up to `MAX_DECODE_PIXELS`. Pillow's decompression-bomb
    warning is silenced because of this. Camera EXIF rotation is applied so photos are upright.
    A missing, corrupt, truncated or non-image file raises DataError naming it.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path) as im:
                box = None
                w, h = im.size
                if w * h > max_pixels:
                    scale = math.sqrt(max_pixels / (w * h))
                    box = (max(1, int(w * scale)), max(1, int(h * scale)))
                    im.draft(None, box)
                    w, h = im.size
                if w * h > MAX_DECODE_PIXELS:
                    raise DataError(
                        f"image is too large to decode safely ({w}x{h} pixels); shrink it below "
                        f"{MAX_DECODE_PIXELS} pixels or save it as JPEG",
                        path,
                    )
                im.load()
                if box is not None and im.mode in _RESAMPLABLE:
                    # Shrink before converting so a huge grayscale image is never expanded to RGB.
                    im.thumbnail(box, Image.Resampling.LANCZOS)
                out = _to_rgb(im)
                if box is not None and (out.width > box[0] or out.height > box[1]):
                    out.thumbnail(box, Image.Resampling.LANCZOS)
                # exif_transpose returns a copy, so the result outlives the closed file.
                return ImageOps.exif_transpose(out)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError, truncation ("image file is truncated") and missing files are OSErrors.
        raise DataError(f"cannot read image: {exc}; replace or remove the file", path) from exc


def _has_split_folders(path: Path) -> tuple[Path, Path] | None:
    train = path / "train"
    for name in ("val", "validation"):
        if train.is_dir() and (path / name).is_dir():
            return train, path / name
    return None


def _reindex(val: Examples, classes: tuple[str, ...], where: Path) -> Examples:
    """Map val labels onto the train class list, which must contain every val class."""
    index = {name: i for i, name in enumerate(classes)}
    for name in val.classes:
        if name not in index:
            raise DataError(
                f"class '{name}' is in the validation folder but not in train; known: {', '.join(classes)}. "
                "Rename or remove it, or add training images for it",
                where / name,
            )
    labels = [index[val.classes[label]] for label in val.labels]
    return Examples(val.inputs, labels, classes, val.source)


def read_image_folder_as(path: Path, classes: tuple[str, ...]) -> Examples:
    """An ImageFolder tree labelled with a given class list (validation or test data of a trained model).

    It may hold a subset of the classes; a class the list does not know is a DataError.
    """
    path = Path(path)
    _check_folder(path)
    return _reindex(_scan_image_folder(path, min_classes=1), classes, path)


def load_images(path: Path, val_fraction: float = 0.2, seed: int = 0, val_path: Path | None = None) -> Splits:
    """Load an image data set as train/val splits, recognising its layout.

    - `val_path` given: `path` is the training ImageFolder tree and `val_path` the validation one.
    - `path/train/` and `path/val/` (or `validation/`): those folders are the splits; val classes must
      be train classes, and val labels index the train class list.
    - `path/train/` alone: `train/` is split stratified by `val_fraction`.
    - idx files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, and `t10k-*`):
      train and t10k are the splits (train alone is split by `val_fraction`).
    - otherwise `path` is one ImageFolder tree, split stratified by `val_fraction` with a fixed `seed`.
    """
    path = Path(path)
    _check_folder(path)
    if val_path is not None:
        train = read_image_folder(path)
        return Splits(train, read_image_folder_as(val_path, train.classes))
    pair = _has_split_folders(path)
    if pair is not None:
        train = read_image_folder(pair[0])
        val = _scan_image_folder(pair[1], min_classes=1)
        return Splits(train, _reindex(val, train.classes, pair[1]))
    train_idx = find_idx_pair(path, "train")
    if train_idx is not None:
        train = read_idx(*train_idx)
        test_idx = find_idx_pair(path, "t10k")
        if test_idx is not None:
            return Splits(train, read_idx(*test_idx, classes=train.classes))
        return split_examples(train, val_fraction, seed)
    if (path / "train").is_dir():
        return split_examples(read_image_folder(path / "train"), val_fraction, seed)
    return split_examples(read_image_folder(path), val_fraction, seed)
