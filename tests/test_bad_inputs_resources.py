"""Bad input that costs resources or never ends, and labels that disagree: the second hostile round's table.

Each row runs through `check_case` from the bad-input table (one line on stderr, exit code 2, nothing
half-written). The classes covered:

- expansion bounded before it happens: YAML aliases (in --config and in a run's config.yaml), pixels (a
  palette PNG of a few kB that decodes to 256 MP), characters (a 10 MB line of text or a 10 MB CoNLL token);
- every bounded flag refused by every command that takes it (--max-length against the model's positions,
  --batch-size, --top-k, --max-image-pixels), with the same message;
- only regular files are data: a named pipe in a class folder, as --data / --val-data / --test-data / --file /
  --config, or a device, is refused at once instead of blocking the reader forever;
- labels: JSON Lines labels of mixed types, one number spelled two ways, CR-only line endings.

Memory is checked where the old failure was memory (the process's resident high-water mark, reset before
the command), and a watchdog turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from task_fixtures import write_conll
from test_bad_inputs import TSV_ROWS, Case, check_case, image_train, table, text_train
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.data import image_pixel_limit, load_image, read_text_table
from tunelab.data.datasets import text_collate
from tunelab.data.text import CHARS_PER_TOKEN, clip_words
from tunelab.errors import DataError
from tunelab.models.zoo import load_backbone
from tunelab.settings.yaml_io import MAX_SETTINGS_BYTES, load_yaml
from tunelab.tasks.base import token_limit

HANG_SECONDS = 300
"""A case still running after this long is stuck (a reader waiting on a pipe): fail it instead of hanging."""

# ---------------------------------------------------------------- inputs


def palette_png(path: Path, side: int = 16000) -> Path:
    """A side x side 8-bit palette PNG of one colour, compressed row by row (a few kB for 16000: 256 MP)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    compressor, row = zlib.compressobj(9), b"\x00" * (1 + side)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 3, 0, 0, 0])  # 8 bits, colour type 3: palette
    plte = bytes([200, 30, 30] * 256)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", plte) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else ', '.join(['lol'] * 9)}]\n"
    for previous, name in zip([None, *"abcdefgh"], "abcdefghi")
)
"""The "billion laughs": nine levels of nine aliases each, 9^9 = 387 million strings from 600 bytes."""

_FINISHED: dict[str, Path] = {}
_KEEP = tempfile.TemporaryDirectory(prefix="tunelab-finished-runs-")


def finished_copy(tmp: Path, kind: str) -> Path:
    """A finished 1-epoch run (image: tiny-cnn, text: tiny-bert) copied to tmp/run; trained once per module."""
    if kind not in _FINISHED:
        root = Path(_KEEP.name) / kind
        root.mkdir()
        data = write_image_folder(root / "img") if kind == "image" else write_text_tsv(root / "t.tsv")
        argv = (image_train if kind == "image" else text_train)(data, root / "run")
        assert main(argv) == 0
        _FINISHED[kind] = root / "run"
    shutil.copytree(_FINISHED[kind], tmp / "run")
    return tmp / "run"


def big_line_tsv(path: Path) -> Path:
    """A training TSV with one 10 MB sentence among short ones."""
    return table(path, "sentence\tlabel\n" + TSV_ROWS + "good " * 2_000_000 + "\t1\n")


def jsonl(path: Path, labels: list) -> Path:
    rows = [{"text": f"{'good' if i % 2 else 'bad'} film {i}", "label": label} for i, label in enumerate(labels)]
    return table(path, "".join(json.dumps(row) + "\n" for row in rows))


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def yaml_file(tmp: Path, text: str) -> Path:
    return table(tmp / "exp.yaml", text)


# ---------------------------------------------------------------- YAML


def alias_bomb_in_config(tmp, mp):
    data = write_image_folder(tmp / "img")
    path = yaml_file(tmp, f"model: tiny-cnn\ndata: {data}\nout: {tmp / 'run'}\n" + BOMB)
    return ["train", "--config", str(path)]


def alias_bomb_in_run_config(tmp, mp):
    run = finished_copy(tmp, "image")
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + BOMB)
    return ["eval", "--run", str(run), "--data", str(write_image_folder(tmp / "img"))]


def oversized_config(tmp, mp):
    return ["train", "--config", str(yaml_file(tmp, "model: tiny-cnn\n" + "# padding\n" * 120_000))]


def deeply_nested_config(tmp, mp):
    return ["train", "--config", str(yaml_file(tmp, "model: tiny-cnn\nepochs: " + "[" * 50_000 + "]" * 50_000 + "\n"))]


# ---------------------------------------------------------------- pixels


def palette_bomb(tmp, mp):
    data = write_image_folder(tmp / "img")
    palette_png(data / "blue" / "huge.png")
    return image_train(data, tmp / "run")


def pixels_lowered_by_flag(tmp, mp):
    return image_train(write_image_folder(tmp / "img"), tmp / "run", "--max-image-pixels", "1000")


def pixels_lowered_in_config(tmp, mp):
    data = write_image_folder(tmp / "img")
    path = yaml_file(tmp, f"model: tiny-cnn\ndata: {data}\nout: {tmp / 'run'}\nepochs: 1\nmax_image_pixels: 1000\n")
    return ["train", "--config", str(path)]


def pixels_lowered_for_eval(tmp, mp):
    run = finished_copy(tmp, "image")
    return ["eval", "--run", str(run), "--data", str(write_image_folder(tmp / "img")), "--max-image-pixels", "1000"]


def eval_keeps_the_runs_pixel_limit(tmp, mp):
    data = write_image_folder(tmp / "img")
    assert main(image_train(data, tmp / "run", "--max-image-pixels", "2000")) == 0  # 40 x 40 = 1600 pixels
    Image.new("RGB", (50, 50), (250, 10, 10)).save(data / "red" / "bigger.png")
    return ["eval", "--run", str(tmp / "run"), "--data", str(data)]


def pixels_lowered_for_predict(tmp, mp):
    run = finished_copy(tmp, "image")
    image = write_image_folder(tmp / "img") / "red" / "red0.png"
    return ["predict", "--run", str(run), str(image), "--max-image-pixels", "1000"]


def pixels_lowered_for_embed(tmp, mp):
    data = write_image_folder(tmp / "img")
    return [
        "embed",
        "--model",
        "tiny-cnn",
        "--data",
        str(data),
        "--out",
        str(tmp / "f.npz"),
        "--max-image-pixels",
        "1000",
    ]


def pixels_lowered_for_advise(tmp, mp):
    data = write_image_folder(tmp / "img")
    return ["advise", "--model", "tiny-cnn", "--data", str(data), "--max-image-pixels", "1000"]


# ---------------------------------------------------------------- characters


def ten_megabyte_line(tmp, mp):
    return text_train(big_line_tsv(tmp / "t.tsv"), tmp / "run")


def ten_megabyte_predict_line(tmp, mp):
    run = finished_copy(tmp, "text")
    return [
        "predict",
        "--run",
        str(run),
        "--file",
        str(table(tmp / "in.txt", "good film\n" + "bad " * 2_500_000 + "\n")),
    ]


def ten_megabyte_conll_token(tmp, mp):
    data = write_conll(tmp / "ner.txt")
    with open(data, "a") as f:
        f.write("x" * 10_000_000 + " X X O\nparis X X B-LOC\n\n")
    return text_train(data, tmp / "run")


# ---------------------------------------------------------------- flags


def max_length_above_positions(tmp, mp):
    return text_train(write_text_tsv(tmp / "t.tsv"), tmp / "run", "--max-length", "100")


def max_length_one(tmp, mp):
    return text_train(write_text_tsv(tmp / "t.tsv"), tmp / "run", "--max-length", "1")


def max_length_above_positions_in_config(tmp, mp):
    data = write_text_tsv(tmp / "t.tsv")
    path = yaml_file(tmp, f"model: tiny-bert\nstrategy: none\ndata: {data}\nout: {tmp / 'run'}\nmax_length: 65\n")
    return ["train", "--config", str(path)]


def eval_batch_size(value: str):
    def make(tmp, mp):
        run = finished_copy(tmp, "text")
        return ["eval", "--run", str(run), "--data", str(write_text_tsv(tmp / "t.tsv")), "--batch-size", value]

    return make


def embed_flag(flag: str, value: str):
    def make(tmp, mp):
        data = write_text_tsv(tmp / "t.tsv")
        return ["embed", "--model", "tiny-bert", "--data", str(data), "--out", str(tmp / "f.npz"), flag, value]

    return make


def predict_top_k(value: str):
    def make(tmp, mp):
        return ["predict", "--run", str(finished_copy(tmp, "text")), "good film", "--top-k", value]

    return make


# ---------------------------------------------------------------- only regular files


def fifo_in_class_folder(tmp, mp):
    data = write_image_folder(tmp / "img")
    fifo(data / "red" / "pipe.png")
    return image_train(data, tmp / "run")


def fifo_as(flag: str):
    def make(tmp, mp):
        pipe = fifo(tmp / "pipe.tsv")
        data = write_text_tsv(tmp / "t.tsv")
        if flag == "--data":
            return text_train(pipe, tmp / "run")
        return text_train(data, tmp / "run", flag, str(pipe))

    return make


def fifo_as_config(tmp, mp):
    return ["train", "--config", str(fifo(tmp / "exp.yaml"))]


def fifo_as_predict_file(tmp, mp):
    return ["predict", "--run", str(finished_copy(tmp, "text")), "--file", str(fifo(tmp / "in.txt"))]


def fifo_as_eval_data(tmp, mp):
    return ["eval", "--run", str(finished_copy(tmp, "text")), "--data", str(fifo(tmp / "pipe.tsv"))]


def fifo_in_eval_folder(tmp, mp):
    run = finished_copy(tmp, "image")
    data = write_image_folder(tmp / "img")
    fifo(data / "blue" / "pipe.jpg")
    return ["eval", "--run", str(run), "--data", str(data)]


def fifo_in_embed_folder(tmp, mp):
    data = write_image_folder(tmp / "img")
    fifo(data / "blue" / "sub" / "pipe.jpg")
    return ["embed", "--model", "tiny-cnn", "--data", str(data), "--out", str(tmp / "f.npz")]


def fifo_as_embed_data(tmp, mp):
    return ["embed", "--model", "tiny-bert", "--data", str(fifo(tmp / "p.jsonl")), "--out", str(tmp / "f.npz")]


def device_as_data(tmp, mp):
    return text_train(Path("/dev/zero"), tmp / "run")


# ---------------------------------------------------------------- labels and line endings


def labels_number_and_string(tmp, mp):
    return text_train(jsonl(tmp / "t.jsonl", [0, 1] * 6 + ["1"]), tmp / "run")


def labels_boolean_and_number(tmp, mp):
    return text_train(jsonl(tmp / "t.jsonl", [True, False] * 6 + [1]), tmp / "run")


def labels_integral_floats(tmp, mp):
    return text_train(jsonl(tmp / "t.jsonl", [0, 1, 0.0, 1.0] * 4), tmp / "run")


def csv_number_two_spellings(tmp, mp):
    return text_train(
        table(tmp / "t.csv", "text,label\n" + TSV_ROWS.replace("\t", ",") + "fine film,1.0\n"), tmp / "run"
    )


def cr_only(suffix: str):
    def make(tmp, mp):
        if suffix == ".jsonl":
            text = jsonl(tmp / "x", [0, 1] * 6).read_text()
        else:
            text = "sentence\tlabel\n" + TSV_ROWS
            text = text.replace("\t", ",") if suffix == ".csv" else text
        return text_train(table(tmp / f"t{suffix}", text.replace("\n", "\r")), tmp / "run")

    return make


TOO_LARGE = r"image is too large to decode safely \({}\), over the limit of {} pixels \(max_image_pixels\); "
BELOW_ONE = r"^command line: {} must be at least 1; got {}$"
PIPE = r": is a named pipe \(FIFO\), not a regular file; only regular files are read as data$"

CASES = [
    Case(
        "yaml-alias-bomb-in-config",
        alias_bomb_in_config,
        r"exp\.yaml:5: invalid YAML: aliases \(\*a\) are not allowed in a settings file; write the value out$",
    ),
    Case("yaml-alias-bomb-in-run-config", alias_bomb_in_run_config, r"config\.yaml:\d+: invalid YAML: aliases \(\*a\)"),
    Case(
        "yaml-over-a-megabyte",
        oversized_config,
        r"exp\.yaml: larger than 1,048,576 bytes, the most read as a config file; is it the right file\?$",
    ),
    Case(
        "yaml-nested-too-deeply", deeply_nested_config, r"exp\.yaml: invalid YAML: lists or mappings nested too deeply"
    ),
    Case(
        "16000x16000-palette-png",
        palette_bomb,
        r"blue/huge\.png: " + TOO_LARGE.format("16000x16000 pixels", "100,000,000") + r".*raise --max-image-pixels$",
    ),
    Case("max-image-pixels-flag", pixels_lowered_by_flag, r"\.png: " + TOO_LARGE.format("40x40 pixels", "1,000")),
    Case(
        "max-image-pixels-in-config", pixels_lowered_in_config, r"\.png: " + TOO_LARGE.format("40x40 pixels", "1,000")
    ),
    Case("max-image-pixels-eval", pixels_lowered_for_eval, r"\.png: " + TOO_LARGE.format("40x40 pixels", "1,000")),
    Case(
        "eval-keeps-the-runs-pixel-limit",
        eval_keeps_the_runs_pixel_limit,
        r"red/bigger\.png: " + TOO_LARGE.format("50x50 pixels", "2,000"),
    ),
    Case(
        "max-image-pixels-predict",
        pixels_lowered_for_predict,
        r"red0\.png: " + TOO_LARGE.format("40x40 pixels", "1,000"),
    ),
    Case("max-image-pixels-embed", pixels_lowered_for_embed, r"\.png: " + TOO_LARGE.format("40x40 pixels", "1,000")),
    Case("max-image-pixels-advise", pixels_lowered_for_advise, r"\.png: " + TOO_LARGE.format("40x40 pixels", "1,000")),
    Case("10mb-text-line", ten_megabyte_line, None),
    Case("10mb-conll-token", ten_megabyte_conll_token, None),
    Case("10mb-predict-line", ten_megabyte_predict_line, None),
    Case(
        "max-length-above-positions",
        max_length_above_positions,
        r"^max_length 100 is more than tiny-bert can take \(64 positions\); use --max-length 64 or less$",
    ),
    Case(
        "max-length-above-positions-in-config",
        max_length_above_positions_in_config,
        r"^max_length 65 is more than tiny-bert can take \(64 positions\)",
    ),
    Case(
        "max-length-1",
        max_length_one,
        r"^max_length 1 leaves no room for text: tiny-bert adds 2 special tokens to every example; use --max-length 3",
    ),
    Case("eval-batch-size-0", eval_batch_size("0"), BELOW_ONE.format("batch_size", "0")),
    Case("eval-batch-size-negative", eval_batch_size("-4"), BELOW_ONE.format("batch_size", "-4")),
    Case("embed-batch-size-0", embed_flag("--batch-size", "0"), BELOW_ONE.format("batch_size", "0")),
    Case("embed-max-length-0", embed_flag("--max-length", "0"), BELOW_ONE.format("max_length", "0")),
    Case(
        "embed-max-length-above-positions", embed_flag("--max-length", "100"), r"^max_length 100 is more than tiny-bert"
    ),
    Case("embed-max-image-pixels-0", embed_flag("--max-image-pixels", "0"), BELOW_ONE.format("max_image_pixels", "0")),
    Case("predict-top-k-0", predict_top_k("0"), BELOW_ONE.format("top_k", "0")),
    Case("predict-top-k-negative", predict_top_k("-1"), BELOW_ONE.format("top_k", "-1")),
    Case("fifo-in-a-class-folder", fifo_in_class_folder, r"img/red/pipe\.png" + PIPE),
    Case("fifo-as-data", fifo_as("--data"), r"pipe\.tsv" + PIPE),
    Case("fifo-as-val-data", fifo_as("--val-data"), r"pipe\.tsv" + PIPE),
    Case("fifo-as-test-data", fifo_as("--test-data"), r"pipe\.tsv" + PIPE),
    Case("fifo-as-config", fifo_as_config, r"exp\.yaml" + PIPE),
    Case("fifo-as-predict-file", fifo_as_predict_file, r"in\.txt" + PIPE),
    Case("fifo-as-eval-data", fifo_as_eval_data, r"pipe\.tsv" + PIPE),
    Case("fifo-in-an-eval-folder", fifo_in_eval_folder, r"img/blue/pipe\.jpg" + PIPE),
    Case("fifo-in-an-embed-subfolder", fifo_in_embed_folder, r"img/blue/sub/pipe\.jpg" + PIPE),
    Case("fifo-as-embed-data", fifo_as_embed_data, r"p\.jsonl" + PIPE),
    Case("device-as-data", device_as_data, r"^/dev/zero: is a character device, not a regular file"),
    Case(
        "jsonl-labels-number-and-string",
        labels_number_and_string,
        r't\.jsonl:13: label "1" is a string but the label on line 1 \(0\) is a number; write every label as one JSON',
    ),
    Case(
        "jsonl-labels-boolean-and-number",
        labels_boolean_and_number,
        r"t\.jsonl:13: label 1 is a number but the label on line 1 \(true\) is a boolean",
    ),
    Case("jsonl-integral-float-labels", labels_integral_floats, None),
    Case(
        "csv-one-number-two-spellings",
        csv_number_two_spellings,
        r"t\.csv:14: label '1\.0' and label '1' on line 2 are one number written two ways",
    ),
    Case(
        "cr-only-tsv", cr_only(".tsv"), r"t\.tsv: lines end with CR only \(old Mac format\); convert the line endings"
    ),
    Case("cr-only-jsonl", cr_only(".jsonl"), r"t\.jsonl: lines end with CR only \(old Mac format\)"),
    Case("cr-only-csv", cr_only(".csv"), None),  # the csv module reads CR-only lines, so CSV keeps working
]

PEAK_MB = {
    "yaml-alias-bomb-in-config": 100,
    "16000x16000-palette-png": 300,
    "10mb-text-line": 300,
    "10mb-conll-token": 300,
    "10mb-predict-line": 300,
}
"""Resident memory a case may add at its peak (MB). Before the bounds: 2.6 GB (palette PNG), 1.6 to 3.4 GB (a
10 MB line through the tokenizer), gigabytes for the alias bomb; 300 MB is the bad-input table's own
bound for a 20000x20000 JPEG."""


# ---------------------------------------------------------------- the table


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the resident-memory high-water mark, to the current size
        return True
    except OSError:
        return False


def _memory_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _hung(signum, frame):
    raise TimeoutError(f"still running after {HANG_SECONDS} s: a reader is blocked")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_resources(case, tmp_path, capsys, monkeypatch):
    bound = PEAK_MB.get(case.id)
    track = bound is not None and _reset_peak()
    before = _memory_mb("VmRSS") if track else 0.0
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(HANG_SECONDS)
    try:
        check_case(case, tmp_path, capsys, monkeypatch)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if track:
        assert _memory_mb("VmHWM") - before < bound, f"peak grew by {_memory_mb('VmHWM') - before:.0f} MB"


def test_the_table_covers_every_class():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids) >= 40
    for word in ("yaml", "pixels", "10mb", "max-length", "batch-size", "top-k", "fifo", "labels", "cr-only"):
        assert any(word in i for i in ids), word


# ---------------------------------------------------------------- the bounds themselves


def test_alias_bomb_is_refused_before_anything_is_expanded(tmp_path):
    path = table(tmp_path / "bomb.yaml", BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"bomb\.yaml:2: invalid YAML: aliases \(\*a\)"):
            load_yaml(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # under 1 MB; expanding would take gigabytes
    assert len(BOMB) < 700


def test_a_settings_file_is_read_no_further_than_the_limit(tmp_path):
    """A 64 GB (sparse) file named like a settings file: refused after reading one byte past the limit."""
    path = table(tmp_path / "exp.yaml", "model: m\n")
    with open(path, "r+b") as f:
        f.truncate(64 << 30)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="larger than 1,048,576 bytes"):
            load_yaml(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_SETTINGS_BYTES


def test_yaml_without_aliases_still_merges_inline_mappings(tmp_path):
    path = table(tmp_path / "exp.yaml", "<<: {epochs: 3, lr: 1e-3}\nmodel: m\n")
    assert load_yaml(path) == {"epochs": 3, "lr": 0.001, "model": "m"}


def _decode_peak_mb(path: Path, **kwargs) -> tuple[float, Image.Image | Exception]:
    if not _reset_peak():
        pytest.skip("needs /proc/self/clear_refs to measure peak memory")
    before = _memory_mb("VmRSS")
    try:
        result = load_image(path, **kwargs)
    except DataError as e:
        result = e
    return _memory_mb("VmHWM") - before, result


def test_palette_bomb_is_refused_from_its_header(tmp_path):
    path = palette_png(tmp_path / "p.png")
    assert path.stat().st_size < 300_000
    grown, result = _decode_peak_mb(path)
    assert isinstance(result, DataError) and "16000x16000 pixels" in str(result)
    assert grown < 20  # header only; decoding took 2.6 GB


def test_a_large_palette_image_under_the_limit_never_exists_as_full_size_rgb(tmp_path):
    """9000 x 9000 palette (81 MP): decoded at 1 byte a pixel and converted a strip at a time."""
    path = palette_png(tmp_path / "p.png", side=9000)
    grown, image = _decode_peak_mb(path)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert max(image.size) <= 4096 and image.getpixel((5, 5)) == (200, 30, 30)
    # The palette image (81 MB), strips and the 3000 x 3000 result; Pillow keeps RGB at 4 bytes a pixel, so
    # converting the whole image first, as before, took 81 + 324 MB.
    assert grown < 200


def test_strip_conversion_matches_whole_image_conversion(tmp_path, monkeypatch):
    """Strip by strip (30 rows each here), the pixels are those of converting the whole image, then box-averaging."""
    import tunelab.data.images as images

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (4999, 333), dtype=np.uint8), "P")  # 333 wide, 4999 tall
    image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
    image.save(tmp_path / "p.png")
    monkeypatch.setattr(images, "_STRIP_PIXELS", 10_000)  # 10,000 // (333 x 6) = 5 boxes of 6 rows a strip
    got = load_image(tmp_path / "p.png", max_pixels=50_000)  # box 57 x 866: reduced by 6
    expected = image.convert("RGB").reduce(6)
    assert got.size == expected.size == (56, 834)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_the_pixel_limit_is_scoped_and_travels_with_the_dataset(tmp_path):
    from tunelab.data import ImageDataset, read_image_folder

    examples = read_image_folder(write_image_folder(tmp_path / "img", per_class=2))
    with image_pixel_limit(1000):
        strict = ImageDataset(examples, lambda image: image)
    relaxed = ImageDataset(examples, lambda image: image)
    assert strict.pixel_limit == 1000 and relaxed.pixel_limit == 100_000_000
    with pytest.raises(DataError, match="over the limit of 1,000 pixels"):
        strict[0]
    assert relaxed[0][0].size == (40, 40)


def test_a_ten_megabyte_line_is_cut_before_tokenising():
    if not _reset_peak():
        pytest.skip("needs /proc/self/clear_refs to measure peak memory")
    backbone = load_backbone("tiny-bert")
    collate = text_collate(backbone.input.tokenizer, 64)
    line = "good film " * 1_000_000
    short = "good film " * (64 * CHARS_PER_TOKEN // 10)
    before = _memory_mb("VmRSS")
    batch, _ = collate([(line, 1), ("bad", 0)])
    grown = _memory_mb("VmHWM") - before
    assert grown < 50  # the whole line through the tokenizer: 1.6 GB
    assert batch["input_ids"].shape == (2, 64)
    assert batch["input_ids"][0].tolist() == collate([(short, 1)])[0]["input_ids"][0].tolist()


def test_clipped_words_keep_their_indices_and_the_budget():
    words = ["a" * 10_000_000, "b", "c"]
    assert clip_words(words, 2) == ["a" * 200]
    assert clip_words(["ab", "cd", "ef"], 1) == ["ab", "cd", "ef"]
    assert sum(len(w) + 1 for w in clip_words(["w" * 30] * 1000, 64)) <= 64 * CHARS_PER_TOKEN + 31


def test_token_limit_is_checked_against_the_model():
    backbone = load_backbone("tiny-bert")
    assert backbone.input.max_positions == 64
    assert token_limit(backbone, None) == backbone.input.max_length
    assert token_limit(backbone, 64) == 64 and token_limit(backbone, 3) == 3
    for bad in (65, 2, 0):
        with pytest.raises(Exception, match="max_length"):
            token_limit(backbone, bad)


def test_jsonl_numbers_are_classes_by_value(tmp_path):
    examples = read_text_table(jsonl(tmp_path / "t.jsonl", [1, 0.0, 1.0, 0, 2.5]))
    assert examples.classes == ("0", "1", "2.5") and examples.labels == [1, 0, 1, 0, 2]


def test_csv_codes_with_leading_zeros_stay_distinct(tmp_path):
    examples = read_text_table(table(tmp_path / "t.csv", "text,label\na,01\nb,1\nc,001\n"))
    assert examples.classes == ("001", "01", "1")
