"""Property-based tests: whatever is on disk, the data readers and the config loader either load it or raise
tunelab's own error, never anything else (the CLI can then print one line instead of a traceback).

Covered here: image folder trees (with broken, truncated and odd images, hidden files, symlink loops),
idx files, CSV/TSV/JSONL text tables built from random rows, and YAML config files. Example counts are
kept small so the suite stays fast; each example gets a fresh folder (function-scoped fixtures are not
reset between hypothesis examples).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tunelab.comparison.grid import CompareConfig
from tunelab.data import load_image, load_images, load_text
from tunelab.errors import TunelabError
from tunelab.settings import TrainConfig, from_yaml_file

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A new empty folder per call, so every hypothesis example starts clean."""
    base = tmp_path_factory.mktemp("prop")

    def new():
        folder = base / str(next(_counter))
        folder.mkdir()
        return folder

    return new


# ---------------------------------------------------------------- image trees


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


_SIZES = st.tuples(st.integers(1, 24), st.integers(1, 24))
_IMAGE_BYTES = st.one_of(
    st.builds(_png, st.sampled_from(["RGB", "L", "RGBA", "LA", "1", "P", "I;16"]), _SIZES),
    st.builds(_jpeg, _SIZES),
    st.builds(lambda data, cut: data[:cut], st.builds(_jpeg, _SIZES), st.integers(0, 200)),  # truncated
    st.binary(max_size=64),
)
_NAMES = st.sampled_from(["a", "b", "c", ".hidden", "train", "val", "é"])
_FILES = st.sampled_from(["x.jpg", "y.png", "z.PNG", "w.gif", "v.txt", ".h.jpg", "u.tiff", "t.webp"])
_ENTRY = st.one_of(
    st.tuples(st.just("file"), st.lists(_NAMES, min_size=0, max_size=3), _FILES, _IMAGE_BYTES),
    st.tuples(st.just("dir"), st.lists(_NAMES, min_size=1, max_size=3)),
    st.tuples(st.just("link"), st.lists(_NAMES, min_size=1, max_size=3), st.lists(_NAMES, min_size=0, max_size=2)),
)


def build_tree(root, entries) -> None:
    for entry in entries:
        kind, parts = entry[0], entry[1]
        folder = root.joinpath(*parts) if kind != "link" else root.joinpath(*parts[:-1])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if kind == "file":
                (folder / entry[2]).write_bytes(entry[3])
            elif kind == "link":  # may point at an ancestor (a loop), a sibling, or nowhere
                os.symlink(root.joinpath(*entry[2]), folder / parts[-1])
        except OSError:
            continue  # a file where a folder goes, or a path through a symlink loop: skip that entry


@SETTINGS
@given(entries=st.lists(_ENTRY, max_size=12), val_fraction=st.sampled_from([0.2, 0.5]), seed=st.integers(0, 3))
def test_image_trees_load_or_raise_tunelab_error(scratch, entries, val_fraction, seed):
    root = scratch()
    build_tree(root, entries)
    try:
        splits = load_images(root, val_fraction=val_fraction, seed=seed)
    except TunelabError:
        return
    for examples in (splits.train, splits.val):
        assert len(examples.inputs) == len(examples.labels)
        assert all(0 <= y < len(examples.classes) for y in examples.labels)
        for path in examples.inputs:
            try:
                image = load_image(path)
            except TunelabError:
                continue
            assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


# ---------------------------------------------------------------- idx files


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


_IDX_IMAGES = st.one_of(
    st.builds(
        lambda n, r, c, extra: _idx(0x803, [n, r, c], bytes(n * r * c + extra)),
        st.integers(0, 6),
        st.integers(0, 4),
        st.integers(0, 4),
        st.integers(-3, 3).filter(lambda e: e >= 0) | st.just(0),
    ),
    st.builds(
        lambda dims, payload: _idx(0x803, dims, payload),
        st.lists(st.integers(0, 2**32 - 1), max_size=3),
        st.binary(max_size=40),
    ),
    st.binary(max_size=40),
)
_IDX_LABELS = st.one_of(
    st.builds(lambda labels: _idx(0x801, [len(labels)], bytes(labels)), st.lists(st.integers(0, 255), max_size=8)),
    st.builds(lambda n, payload: _idx(0x801, [n], payload), st.integers(0, 2**32 - 1), st.binary(max_size=10)),
    st.binary(max_size=20),
)


@SETTINGS
@given(
    images=_IDX_IMAGES,
    labels=_IDX_LABELS,
    gz=st.tuples(st.booleans(), st.booleans()),
    with_test=st.booleans(),
    damage=st.integers(0, 30),
)
def test_idx_files_load_or_raise_tunelab_error(scratch, images, labels, gz, with_test, damage):
    root = scratch()
    for prefix in ("train", "t10k") if with_test else ("train",):
        for (name, data), zipped in zip((("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)), gz):
            payload = gzip.compress(data) if zipped else data
            if zipped and damage:
                payload = payload[:-damage]  # a cut-off download
            (root / f"{prefix}-{name}{'.gz' if zipped else ''}").write_bytes(payload)
    try:
        splits = load_images(root, val_fraction=0.5, seed=0)
    except TunelabError:
        return
    assert all(0 <= y < len(splits.train.classes) for y in splits.train.labels + splits.val.labels)


# ---------------------------------------------------------------- text tables built from rows

_CELL = st.text(alphabet=st.sampled_from(list("ab ,\t\"'\n\r{}[]:\\é0") + ["\x00", "\u2028"]), max_size=8)
_COLUMN = st.sampled_from(["text", "sentence", "label", "extra", ""])


def _serialise(kind: str, header: list[str], rows: list[list[str]]) -> bytes:
    if kind == "jsonl":
        return "".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows).encode()
    sep = "," if kind == "csv" else "\t"
    lines = [sep.join(header)] + [sep.join(row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@SETTINGS
@given(
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
    header=st.lists(_COLUMN, min_size=1, max_size=4),
    rows=st.lists(st.lists(_CELL, min_size=0, max_size=5), max_size=12),
    val_rows=st.none() | st.lists(st.lists(_CELL, min_size=0, max_size=5), max_size=4),
    text_column=st.sampled_from([None, "text", "extra"]),
)
def test_text_tables_load_or_raise_tunelab_error(scratch, kind, header, rows, val_rows, text_column):
    root = scratch()
    train = root / f"train.{kind}"
    train.write_bytes(_serialise(kind, header, rows))
    val = None
    if val_rows is not None:
        val = root / f"val.{kind}"
        val.write_bytes(_serialise(kind, header, val_rows))
    try:
        splits = load_text(train, val, val_fraction=0.5, seed=0, text_column=text_column)
    except TunelabError:
        return
    assert len(splits.train) > 0 and len(splits.val) > 0
    assert all(isinstance(t, str) for t in splits.train.inputs + splits.val.inputs)
    assert all(0 <= y < len(splits.train.classes) for y in splits.train.labels + splits.val.labels)


# ---------------------------------------------------------------- YAML config files

_KEYS = st.sampled_from([*TrainConfig.__dataclass_fields__, "epochz", "", "model ", "1", "strategies"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["none", "no", "yes", "1e-3", "0x10", "~", "auto", "bf16", "tiny-cnn"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_YAML_TEXT = st.text(
    alphabet=st.sampled_from(list(string.ascii_lowercase[:6] + "_:-[]{}&*!|>'\"%@`#,? \n\t.0123456789")), max_size=80
)


@SETTINGS
@given(
    document=st.one_of(
        st.dictionaries(_KEYS, _VALUES, max_size=6).map(lambda d: yaml.safe_dump(d).encode()),
        st.dictionaries(_KEYS, _VALUES, max_size=6).map(lambda d: yaml.safe_dump({"model": "tiny-cnn", **d}).encode()),
        _YAML_TEXT.map(str.encode),
        st.builds(lambda key, text: f"{key}: {text}\n".encode(), _KEYS, _YAML_TEXT),
        st.binary(max_size=60),
    ),
    cls=st.sampled_from([TrainConfig, CompareConfig]),
)
def test_config_files_load_or_raise_tunelab_error(scratch, document, cls):
    path = scratch() / "exp.yaml"
    path.write_bytes(document)
    try:
        config = from_yaml_file(cls, path)
    except TunelabError as e:
        assert "\n" not in str(e).strip() or str(e).startswith(str(path)), str(e)
        return
    assert isinstance(config, cls) and isinstance(config.model, str)
