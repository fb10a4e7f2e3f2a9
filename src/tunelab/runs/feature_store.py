"""The feature store: a frozen prefix's features computed once for all the runs of a grid, on disk.

The runs of a compare that freeze the same first blocks of the same model and read the same examples the
same way compute the same features: `none` for seeds 0..4 on fixed train/val folders computes them five
times without a store. With --feature-store (compare sets <out>/feature-cache for every run), the first run
to finish computing a split's features publishes them here, and a later run finds them and trains on them
instead of computing them itself.

**The key** is a hash of everything the features are a function of, so a hit gives exactly the numbers the
run would have computed (tests/test_feature_store.py trains with and without the store, bit for bit):
- the frozen blocks: how many, their architecture (the modules' repr) and their weights and buffers (hashed
  bytes, so a model name that now means other weights, or a run directory as the model, cannot collide);
- the preprocessing: the image input (size after --image-size, mean/std, crop, interpolation) or the
  tokenizer (its full serialised form) and --max-length; the task (its dataset and batching); --batch-size,
  since a batch's composition and padding decide the last bits of a float result;
- the examples of the split, in order. An image file counts by its path, size and modification time (the
  quick check of make and rsync: hashing every image's bytes would cost a read of the data set per run);
  a text by its characters; an in-memory array (MNIST idx) by its bytes. A file replaced in place with the
  same size and mtime is not noticed: `touch` it, or delete the store;
- where and how it is computed: device type, torch version, torch's thread count (a compare gives every
  run the same --run-cpus), the tunelab version and this store's format.
Labels are not in the key: features do not depend on them (the run keeps its own).

**Concurrent writers** (a compare's runs on several workers or nodes): an entry is a folder
<store>/<key>/ holding features.npy (float32 rows), offsets.npy (row ranges per example) and key.json (what
the key was made of, for people). A writer fills a temporary folder beside it (.<key>.<host>.<pid>.tmp),
fsyncs every file and the folder, and renames it into place: a rename is atomic, so <store>/<key>/ is either
absent or complete, and when two writers race the second rename fails and its copy is dropped. A reader
trusts an entry only if it is complete and its shapes check; a missing or damaged entry is computed by the
run itself, never waited for. Temporary folders older than STALE_SECONDS (a killed writer's) are removed by
the next writer. A failure to publish (a full disk, a read-only store) costs only the sharing: the run goes on.

The store is not deleted when a compare ends, so a later compare into the same --out (more seeds, a resumed
grid) reuses it; delete <out>/feature-cache to free the space.

May import: errors, fileio, settings, models, data (and torch, numpy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tunelab.data.examples import Examples
from tunelab.models.contract import Backbone
from tunelab.models.inputs import ImageInput
from tunelab.settings import TrainConfig

FORMAT = 1
"""Bumped whenever what an entry holds, or how features are computed, changes."""

STALE_SECONDS = 6 * 3600
"""A temporary folder this old belongs to a writer that was killed: writing one takes seconds to minutes."""


@dataclass(frozen=True)
class Slot:
    """One entry of the store: where it lives, and what its key was made of."""

    store: Path
    """The store folder (--feature-store)."""
    key: str
    """The hash of `parts`: the entry's folder name."""
    parts: dict = field(repr=False)
    """What the key was made of (saved as key.json beside the features)."""
    quiet: bool = False
    """Say nothing (every process but the main one of a multi-process launch)."""

    @property
    def path(self) -> Path:
        return self.store / self.key


@dataclass(frozen=True)
class Stored:
    """An entry's arrays: rows of float32 features and where each example's rows begin and end."""

    offsets: np.ndarray
    """int64, one more than the examples: example i is rows offsets[i]:offsets[i + 1]."""
    data: np.ndarray
    """float32 rows (memory-mapped when read from the store)."""


def slot_for(
    config: TrainConfig,
    backbone: Backbone,
    stop: int,
    examples: Examples,
    dataset,
    device: torch.device,
    main: bool,
    pool: nn.Module | None = None,
) -> Slot | None:
    """The entry holding blocks[:stop]'s features of `examples` read through `dataset` (pooled by `pool`, when
    given); None without a store."""
    if config.feature_store is None:
        return None
    try:
        data = examples_fingerprint(examples.inputs)
    except OSError:  # an example that cannot be read: the run fails on it with its own message
        return None
    parts = {
        "format": FORMAT,
        "tunelab": _tunelab_version(),
        "torch": torch.__version__,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "model": backbone.name,
        "model_class": type(backbone.model).__qualname__,
        "blocks": stop,
        "pool": None if pool is None else repr(pool),
        "architecture": _sha(repr(backbone.model.blocks[:stop]).encode()),
        "weights": weights_fingerprint(backbone.model.blocks[:stop]),
        "input": input_fingerprint(backbone),
        "max_length": config.max_length if backbone.modality == "text" else None,
        "task": config.task,
        "dataset": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        "batch_size": config.batch_size,
        "examples": len(examples),
        "data": data,
    }
    key = _sha(json.dumps(parts, sort_keys=True).encode())[:32]
    return Slot(Path(config.feature_store), key, parts, quiet=not main)


# ---------------------------------------------------------------- reading and publishing


def load(slot: Slot, examples: int) -> Stored | None:
    """The entry's features, memory-mapped; None when it is missing or does not hold `examples` examples."""
    if not slot.path.is_dir():
        return None
    try:
        offsets = np.load(slot.path / "offsets.npy")
        data = np.load(slot.path / "features.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        _say(slot, f"tunelab: warning: {slot.path} is damaged ({e}); computing the features instead")
        return None
    sound = (
        offsets.dtype == np.int64
        and offsets.shape == (examples + 1,)
        and offsets[0] == 0
        and bool(np.all(np.diff(offsets) >= 0))
        and data.dtype == np.float32
        and data.ndim >= 2
        and data.shape[0] == offsets[-1]
    )
    if not sound:
        _say(slot, f"tunelab: warning: {slot.path} does not hold the features its key names; computing them instead")
        return None
    return Stored(offsets, data)


def publish(slot: Slot, stored: Stored) -> bool:
    """Add the entry unless another writer has (see the module docstring); returns whether this call added it."""
    if slot.path.is_dir():
        return False
    temp = slot.store / f".{slot.key}.{socket.gethostname()}.{os.getpid()}.tmp"
    try:
        slot.store.mkdir(parents=True, exist_ok=True)
        _remove_stale(slot.store)
        shutil.rmtree(temp, ignore_errors=True)  # our own, left by an earlier attempt of this process
        temp.mkdir()
        _write(temp / "features.npy", lambda f: np.save(f, stored.data, allow_pickle=False))
        _write(temp / "offsets.npy", lambda f: np.save(f, stored.offsets, allow_pickle=False))
        key_text = json.dumps(slot.parts, indent=1, sort_keys=True) + "\n"
        _write(temp / "key.json", lambda f: f.write(key_text.encode()))
        _fsync_folder(temp)
        try:
            os.rename(temp, slot.path)  # atomic; fails when another writer's entry is there already
        except OSError:
            if slot.path.is_dir():
                return False
            raise
        _fsync_folder(slot.store)
        return True
    except OSError as e:
        _say(slot, f"tunelab: warning: cannot add features to the store {slot.store}: {e.strerror or e}; going on")
        return False
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _write(path: Path, fill) -> None:
    with open(path, "wb") as f:
        fill(f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_folder(path: Path) -> None:
    """Make a folder's entries (a new file, a rename) durable; not every system can open a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(store: Path) -> None:
    """Temporary folders of writers killed long ago."""
    now = time.time()
    for temp in store.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - temp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(temp, ignore_errors=True)


def _say(slot: Slot, line: str) -> None:
    if not slot.quiet:
        print(line, file=sys.stderr)


# ---------------------------------------------------------------- fingerprints


def examples_fingerprint(inputs: list) -> str:
    """A hash of the inputs in order: files by path, size and mtime; texts by their characters; arrays by bytes."""
    digest = hashlib.sha256()
    for item in inputs:
        _feed(digest, item)
    return digest.hexdigest()


def _feed(digest, item) -> None:
    if isinstance(item, os.PathLike):
        stat = os.stat(item)
        _chunk(
            digest, b"path", f"{os.fspath(item)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode("utf-8", "surrogatepass")
        )
    elif isinstance(item, str):
        _chunk(digest, b"text", item.encode("utf-8", "surrogatepass"))
    elif isinstance(item, np.ndarray):
        _chunk(digest, b"array", f"{item.dtype.str}{item.shape}".encode() + np.ascontiguousarray(item).tobytes())
    elif isinstance(item, list | tuple):
        _chunk(digest, b"list", str(len(item)).encode())
        for part in item:
            _feed(digest, part)
    else:
        _chunk(digest, type(item).__qualname__.encode(), repr(item).encode("utf-8", "surrogatepass"))


def _chunk(digest, kind: bytes, data: bytes) -> None:
    """Kind and length first, so no two different sequences of items feed the same bytes."""
    digest.update(kind + b":" + str(len(data)).encode() + b":")
    digest.update(data)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer of `module`: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        _chunk(digest, name.encode(), f"{t.dtype}{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def input_fingerprint(backbone: Backbone) -> dict | str:
    """The image preprocessing as its fields; the tokenizer as a hash of its full serialised form."""
    if isinstance(backbone.input, ImageInput):
        return asdict(backbone.input)
    tokenizer = backbone.input.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        serialised = backend.to_str()
    else:  # a slow tokenizer: its class, vocabulary and settings
        serialised = f"{type(tokenizer).__qualname__}{sorted(tokenizer.get_vocab().items())}{tokenizer.init_kwargs}"
    return _sha(serialised.encode("utf-8", "surrogatepass"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tunelab_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tunelab")
    except PackageNotFoundError:
        return "unknown"
