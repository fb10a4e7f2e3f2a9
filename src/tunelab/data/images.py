"""Image data on disk: class-per-folder trees, idx files, and decoding one image safely.

Reading a tree only lists file paths (no decoding), so a folder of thousands of photos is ready at once;
images are decoded one at a time by `load_image` when the dataset asks for them, and a bad file then
fails with its own path instead of somewhere inside a batch.

Decoding is bounded before it happens: only regular files are listed or opened (a named pipe named
`x.png` would block the reader forever), and an image whose decoded size exceeds the pixel limit is
refused from its header, before any pixel is decoded. The limit is the max_image_pixels setting
(--max-image-pixels), applied to every dataset made inside `image_pixel_limit` (the commands set it),
like Pillow's own process-wide MAX_IMAGE_PIXELS but scoped, and kept by each dataset, so DataLoader
worker processes apply it too.
"""

from __future__ import annotations

import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from tunelab.data.examples import Examples, Splits
from tunelab.data.idx import find_idx_pair, read_idx
from tunelab.data.split_folders import training_folders
from tunelab.data.splits import split_examples
from tunelab.errors import DataError
from tunelab.fileio import not_regular, open_regular
from tunelab.settings import DataSettings

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""File name endings (compared case-insensitively) that count as images; other files are ignored."""

DEFAULT_MAX_IMAGE_PIXELS = DataSettings.max_image_pixels
"""Decode no image of more pixels than this unless max_image_pixels says otherwise (the setting's default,
100 MP: a 10000 x 10000 scan). Decoded sizes, not file sizes, are what count: a 16000 x 16000 palette PNG of
249 KB is 256 MP, which decoding and converting to RGB took 2.6 GB for. JPEGs are reduced while decoding (up
to 8x per side), so only a JPEG over 6400 MP reaches the limit; other formats are decoded at full size, 1 to
4 bytes a pixel, then shrunk (see `load_image`)."""

REDUCE_TO_PIXELS = 4096 * 4096
"""Images larger than this are shrunk (aspect kept) right after decoding: no model input needs more."""

_STRIP_PIXELS = 1 << 22
"""Pixels converted to RGB at a time when a palette, 1-bit or 16-bit image is shrunk (16 MB at Pillow's 4 bytes)."""

_pixel_limit = DEFAULT_MAX_IMAGE_PIXELS
"""The limit datasets made now take (see `image_pixel_limit`)."""

_RESAMPLABLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBa", "CMYK", "I", "F"})
"""Modes Pillow can shrink directly; others (palette, 1-bit, 16-bit) go to RGB a strip at a time (`_strips_to_rgb`)."""

_OPEN_LOCK = threading.Lock()
"""Serialises the rare re-open with Pillow's bomb limit lifted, so concurrent re-opens restore it correctly."""


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _inode(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


@contextmanager
def image_pixel_limit(pixels: int) -> Iterator[None]:
    """Inside the block, image datasets made (and `load_image` without a limit) refuse images of more than
    `pixels` decoded pixels; the previous limit is back afterwards."""
    global _pixel_limit
    saved, _pixel_limit = _pixel_limit, int(pixels)
    try:
        yield
    finally:
        _pixel_limit = saved


def current_pixel_limit() -> int:
    """The pixel limit in force: DEFAULT_MAX_IMAGE_PIXELS, or the one an enclosing `image_pixel_limit` set."""
    return _pixel_limit


def _check_regular(path: Path) -> None:
    """Refuse a named pipe, socket or device named like an image; a missing file is left for `load_image`."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # a dangling link: reported with its path when it is read
    if not stat.S_ISREG(mode):
        raise not_regular(path, mode)


def _class_images(folder: Path, blocked: set[tuple[int, int]]) -> list[Path]:
    """Image files anywhere below `folder`, sorted; follows symlinks but visits each real folder once.

    `blocked` holds the root and the other class folders: a link back to them would otherwise pull
    another class's images in under this class's label. A file named like an image that is not a regular
    file is a DataError.
    """
    return _walk_images(folder, blocked)[0]


def _walk_images(folder: Path, blocked: set[tuple[int, int]]) -> tuple[list[Path], int]:
    """`_class_images`, and the number of visible files skipped because their names are not image names."""
    found: list[Path] = []
    skipped = 0
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
            if _is_hidden(name):
                continue
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                skipped += 1
                continue
            found.append(Path(dirpath) / name)
            _check_regular(found[-1])
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix()), skipped


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


def _open(file: BinaryIO) -> Image.Image:
    """Open lazily (header only); Pillow's bomb limit is lifted because `load_image` applies its own."""
    try:
        return Image.open(file)
    except Image.DecompressionBombError:
        file.seek(0)
        with _OPEN_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(file)
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


def _strips_to_rgb(im: Image.Image, box: tuple[int, int]) -> Image.Image:
    """A decoded image Pillow cannot shrink directly (palette, 1-bit, 16-bit) as RGB within `box`.

    Converted a strip of rows at a time, each strip box-averaged by the whole factor that brings the image
    within `box` as it is made, so the full-size RGB copy (3 bytes a pixel beside the 1 of a palette image)
    never exists. The result may be up to half of `box` per side: far more than any model input needs.
    """
    w, h = im.size
    factor = math.ceil(max(w / box[0], h / box[1]))
    rows = max(1, _STRIP_PIXELS // (w * factor)) * factor  # a whole number of reduction boxes
    out = Image.new("RGB", (math.ceil(w / factor), math.ceil(h / factor)))
    out.info = dict(im.info)  # EXIF orientation included
    for top in range(0, h, rows):
        strip = _to_rgb(im.crop((0, top, w, min(h, top + rows))))
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, top // factor))
    return out


def _too_large(size: tuple[int, int], decoded: tuple[int, int], limit: int) -> str:
    w, h = size
    reduced = "" if decoded == size else f", {decoded[0]}x{decoded[1]} at the smallest JPEG scale"
    return (
        f"image is too large to decode safely ({w}x{h} pixels{reduced}), over the limit of {limit:,} pixels "
        "(max_image_pixels); shrink the image, save it as JPEG, or raise --max-image-pixels"
    )


def load_image(path: Path, max_pixels: int = REDUCE_TO_PIXELS, pixel_limit: int | None = None) -> Image.Image:
    """Decode one image file to an RGB PIL image, reducing images larger than `max_pixels`.

    Grayscale, RGBA, palette (GIF) and 16-bit images all come back as RGB. A JPEG over `max_pixels` is
    decoded at 1/2, 1/4 or 1/8 scale (`Image.draft`), so a 20000x20000 photo never needs its full-size
    buffer; other formats are decoded then shrunk. An image that would still decode to more than
    `pixel_limit` pixels (None: `current_pixel_limit()`) is a DataError, raised from its header before any
    pixel is decoded; Pillow's own decompression-bomb check is lifted in favour of this one. Camera EXIF
    rotation is applied so photos are upright. A missing, corrupt, truncated, non-image or non-regular
    file raises DataError naming it.
    """
    path = Path(path)
    limit = current_pixel_limit() if pixel_limit is None else pixel_limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_regular(path) as file, _open(file) as im:
                box = None
                size = w, h = im.size
                if w * h > max_pixels:
                    scale = math.sqrt(max_pixels / (w * h))
                    box = (max(1, int(w * scale)), max(1, int(h * scale)))
                    im.draft(None, box)
                    w, h = im.size
                if w * h > limit:
                    raise DataError(_too_large(size, (w, h), limit), path)
                im.load()
                if box is None:
                    out = _to_rgb(im)
                elif im.mode in _RESAMPLABLE:
                    # Shrink before converting so a huge grayscale image is never expanded to RGB.
                    im.thumbnail(box, Image.Resampling.LANCZOS)
                    out = _to_rgb(im)
                else:
                    out = _strips_to_rgb(im, box)
                if box is not None and (out.width > box[0] or out.height > box[1]):
                    out.thumbnail(box, Image.Resampling.LANCZOS)
                # exif_transpose returns a copy, so the result outlives the closed file.
                return ImageOps.exif_transpose(out)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError, truncation ("image file is truncated") and missing files are OSErrors.
        raise DataError(f"cannot read image: {exc}; replace or remove the file", path) from exc


def _reindex(val: Examples, classes: tuple[str, ...], where: Path) -> Examples:
    """Map val labels onto the train class list, which must contain every val class."""
    index = {name: i for i, name in enumerate(classes)}
    for name in val.classes:
        if name not in index:
            raise DataError(
                f"class '{name}' is not a training class; known: {', '.join(classes)}. "
                "Rename or remove it, or add training images for it",
                where / name,
            )
    labels = [index[val.classes[label]] for label in val.labels]
    return Examples(val.inputs, labels, classes, val.source)


def read_image_folder_as(path: Path, classes: tuple[str, ...]) -> Examples:
    """An ImageFolder tree labelled with a given class list (validation or test data of a trained model).

    It may hold a subset of the classes; a class the list does not know is a DataError. A folder of idx files
    (MNIST's layout) is read too, its `t10k-*` pair if it has one, else its `train-*` pair: labels are
    class indices there, named by `classes` as training named them.
    """
    path = Path(path)
    _check_folder(path)
    pair = find_idx_pair(path, "t10k") or find_idx_pair(path, "train")
    if pair is not None:
        return read_idx(*pair, classes=classes)
    return _reindex(_scan_image_folder(path, min_classes=1), classes, path)


def read_image_sets(path: Path, val_path: Path | None = None) -> tuple[Examples, Examples | None]:
    """The training images of a data set and, when its layout holds them, its validation images.

    - `val_path` given: `path` is the training ImageFolder tree and `val_path` the validation one.
    - `path/train/` and `path/val/` (or `validation/`, `valid/`; see `data.split_folders`): those folders;
      val classes must be train classes, and val labels index the train class list.
    - `path/train/` alone: `train/`, with no validation set (None: the caller splits one off).
    - idx files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, and `t10k-*`): train, and
      t10k as the validation set when present.
    - otherwise `path` is one ImageFolder tree, with no validation set.
    """
    path = Path(path)
    _check_folder(path)
    if val_path is not None:
        train = read_image_folder(path)
        return train, read_image_folder_as(val_path, train.classes)
    folders = training_folders(path)
    if folders is not None and folders[1] is not None:
        train_path, val_path = folders
        train = read_image_folder(train_path)
        return train, _reindex(_scan_image_folder(val_path, min_classes=1), train.classes, val_path)
    train_idx = find_idx_pair(path, "train")
    if train_idx is not None:
        train = read_idx(*train_idx)
        test_idx = find_idx_pair(path, "t10k")
        return train, None if test_idx is None else read_idx(*test_idx, classes=train.classes)
    return read_image_folder(path if folders is None else folders[0]), None


def load_images(path: Path, val_fraction: float = 0.2, seed: int = 0, val_path: Path | None = None) -> Splits:
    """Load an image data set as train/val splits, recognising its layout (see `read_image_sets`).

    Where the layout has no validation set, the training images are split stratified by `val_fraction`
    with a fixed `seed`.
    """
    train, val = read_image_sets(path, val_path)
    return Splits(train, val) if val is not None else split_examples(train, val_fraction, seed)


@dataclass(frozen=True)
class ImageInputs:
    """Image files to label, from command-line paths where each folder stands for the images below it."""

    files: list[str]
    """Image files in the order given, a folder's images in its place (sorted by their path inside it)."""
    notes: list[str]
    """One line per folder that held files that are not images (skipped), for the user to see."""


def image_inputs(items: Sequence[str]) -> ImageInputs:
    """Expand every folder among `items` into the image files anywhere below it; files are kept as given.

    A folder is read as a class folder is (`_class_images`: recursively, sorted, hidden files skipped,
    symlinks followed once); files whose names are not image names are skipped and counted in a note. A
    folder with no image at all is a DataError: predicting nothing is never what was meant. A path that
    is not a folder is left for the reader, which names it when it is missing.
    """
    files: list[str] = []
    notes: list[str] = []
    for item in items:
        folder = Path(item)
        if not folder.is_dir():
            files.append(item)
            continue
        found, skipped = _walk_images(folder, set())
        if not found:
            others = f" ({skipped} other file{'s' if skipped != 1 else ''})" if skipped else ""
            raise DataError(
                f"no images in this folder{others}; image files end in {' '.join(IMAGE_EXTENSIONS)}", folder
            )
        files.extend(str(p) for p in found)
        if skipped:
            notes.append(
                f"{folder}: {len(found)} image{'s' if len(found) != 1 else ''}, skipped {skipped} "
                f"file{'s' if skipped != 1 else ''} that {'are' if skipped != 1 else 'is'} not an image"
            )
    return ImageInputs(files, notes)
