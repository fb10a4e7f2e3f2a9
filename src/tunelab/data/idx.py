"""The idx format of MNIST and Fashion-MNIST: a big-endian header, then raw uint8 pixels or labels.

Both files are read whole (Fashion-MNIST's training images are 47 MB uncompressed) and every header
field is checked against the byte count, so a truncated download or swapped file names fail here with
the file's name rather than later as garbage pixels.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tunelab.data.examples import Examples
from tunelab.errors import DataError
from tunelab.fileio import open_regular

IMAGES_MAGIC = 0x00000803
"""Magic number of an idx3 file of uint8 images (type 0x08, 3 dimensions: count, rows, columns)."""
LABELS_MAGIC = 0x00000801
"""Magic number of an idx1 file of uint8 labels (type 0x08, 1 dimension: count)."""

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic (whatever its name says)."""
    try:
        with open_regular(path) as f:  # a named pipe or a device is refused, not waited on
            data = f.read()
    except FileNotFoundError:
        raise DataError("idx file not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot read idx file: {exc}", path) from exc
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt gzip data: {exc}; download the file again", path) from exc
    return data


def _parse(path: Path, magic: int, what: str) -> np.ndarray:
    data = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big")
    if len(data) < 4 or found != magic:
        raise DataError(
            f"not an idx {what} file: magic number {data[:4].hex() or 'missing'}, expected {magic:08x}; "
            "check that the images and labels files are not swapped",
            path,
        )
    if len(data) < header:
        raise DataError(f"idx header cut short ({len(data)} bytes); the file is truncated", path)
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"header promises {'x'.join(map(str, dims))} values ({expected} bytes) but the file has "
            f"{len(data)} bytes; the file is truncated or corrupt",
            path,
        )
    # bytearray makes the array writable, so torch.from_numpy later does not warn.
    return np.frombuffer(bytearray(data[header:]), dtype=np.uint8).reshape(dims)


def read_idx(
    images_path: Path,
    labels_path: Path,
    classes: Sequence[str] | None = None,
) -> Examples:
    """Read an idx images/labels pair (gzipped or not) into Examples of HxW uint8 arrays.

    Class names are "0", "1", ... up to the largest label (so "0".."9" for MNIST), or `classes` when
    given (e.g. Fashion-MNIST's "T-shirt/top", ...); a label with no name raises DataError.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _parse(images_path, IMAGES_MAGIC, "images (idx3-ubyte)")
    labels = _parse(labels_path, LABELS_MAGIC, "labels (idx1-ubyte)")
    if len(images) != len(labels):
        raise DataError(
            f"{len(images)} images but {labels_path.name} has {len(labels)} labels; "
            "use the labels file that belongs to these images",
            images_path,
        )
    if len(labels) == 0:
        raise DataError("the idx file holds no examples", labels_path)
    top = int(labels.max())
    if classes is None:
        names = tuple(str(i) for i in range(top + 1))
    else:
        names = tuple(classes)
        if top >= len(names):
            item = int(np.argmax(labels >= len(names)))
            raise DataError(
                f"label {int(labels[item])} (item {item}) has no class name: {len(names)} names given "
                f"({', '.join(names)})",
                labels_path,
            )
    return Examples(
        inputs=list(images),
        labels=[int(x) for x in labels],
        classes=names,
        source=str(images_path),
    )


def find_idx_pair(folder: Path, prefix: str) -> tuple[Path, Path] | None:
    """The (images, labels) files named `<prefix>-images-idx3-ubyte[.gz]` etc. in `folder`, if any.

    Finding one of the two without the other is an error: it is an idx data set with a file missing.
    """
    found: dict[str, Path] = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        for ext in ("", ".gz"):
            if (folder / f"{prefix}-{kind}{ext}").is_file():
                found[kind] = folder / f"{prefix}-{kind}{ext}"
                break
    if not found:
        return None
    if len(found) == 1:
        ((kind, present),) = found.items()
        missing = "labels-idx1-ubyte" if kind == "images-idx3-ubyte" else "images-idx3-ubyte"
        raise DataError(f"found {present.name} but no {prefix}-{missing}[.gz] beside it; add the missing file", folder)
    return found["images-idx3-ubyte"], found["labels-idx1-ubyte"]


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) in the idx format: magic (type 0x08, ndim), big-endian dimensions, then the raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: Sequence[int]) -> tuple[Path, Path]:
    """Write `<prefix>-images-idx3-ubyte.gz` (N x H x W uint8) and `<prefix>-labels-idx1-ubyte.gz` into `folder`.

    The inverse of `read_idx`, for making subsets that every idx reader (tunelab's included) can load.
    The gzip header carries no timestamp, so the same arrays always give the same bytes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images_path.write_bytes(gzip.compress(idx_bytes(np.asarray(images)), mtime=0))
    labels_path.write_bytes(gzip.compress(idx_bytes(np.asarray(labels)), mtime=0))
    return images_path, labels_path
