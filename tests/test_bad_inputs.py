"""The bad-input table: what a user can throw at `tunelab`, run through the CLI as they would run it.

Every case builds its input in a fresh folder, runs `tunelab.cli.main`, and checks the contract: bad input
is one line on stderr (`tunelab: error: ...`, quoting no megabyte of the user's data), exit code 2, and
nothing left half-written (no temporary files, no feature cache, no run directory that a failed start
created, and an unfinished run's checkpoint still loads). Inputs that tunelab should accept (grayscale,
RGBA, a 20000x20000 JPEG, a symlink loop inside a class folder, a 1 MB CSV field) must train.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tunelab.runs.epoch as epoch_module
from recipe_fixtures import register_biasless_cnn
from task_fixtures import write_semeval
from train_fixtures import write_image_folder, write_text_tsv
from tunelab import fileio
from tunelab.cli import main
from tunelab.fileio import load_json
from tunelab.runs.checkpoint_io import load_tensors, save_tensors
from tunelab.strategies import REGISTRY, Plan, Strategy

MAX_MESSAGE = 600
"""An error line longer than this is quoting user data it should have shortened."""


# ---------------------------------------------------------------- inputs


def image_train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "none",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        *extra,
    ]


def text_train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "tiny-bert",
        "--strategy",
        "none",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        *extra,
    ]


def huge_jpeg(path: Path, side: int = 20000) -> Path:
    """A valid side x side gray JPEG in ~side²/85 bytes, written without ever holding the image in memory.

    A uniform mid-gray 8x8 block codes as 6 bits with the standard Huffman tables (DC difference 0, then
    end-of-block), so four blocks are the 3 bytes of a 16x16 Pillow-made JPEG's scan: repeat them.
    """
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, "JPEG")
    data = buffer.getvalue()
    sos = data.index(b"\xff\xda")
    header = data[: sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")]
    scan = data[len(header) : -2]
    assert scan == b"\x28\xa2\x8a" and side % 16 == 0
    sof = header.index(b"\xff\xc0") + 5  # frame header: marker, length, precision, then height and width
    header = header[:sof] + side.to_bytes(2, "big") + side.to_bytes(2, "big") + header[sof + 4 :]
    with open(path, "wb") as f:
        f.write(header)
        f.write(scan * ((side // 8) ** 2 // 4))
        f.write(b"\xff\xd9")
    return path


def huge_png(path: Path, side: int = 20000) -> Path:
    """A valid side x side 1-bit PNG, compressed row by row (a few kB)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    compressor, row = zlib.compressobj(9), b"\x00" * (1 + side // 8)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / "train-images-idx3-ubyte").write_bytes(
        (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, rows, cols)) + images.tobytes()
    )
    (folder / "train-labels-idx1-ubyte").write_bytes(
        (0x801).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.tobytes()
    )
    return folder


def table(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TSV_ROWS = "".join(f"good film {i}\t1\nbad film {i}\t0\n" for i in range(6))
CSV_ROWS = TSV_ROWS.replace("\t", ",")


def run_until_interrupted(argv: list[str], stop_at_epoch: int) -> None:
    """Run `tunelab train` and interrupt it (as Ctrl-C would) when epoch index `stop_at_epoch` starts."""
    real_epoch = epoch_module._train_epoch

    def interrupted(*args, **kwargs):
        if args[-2] == stop_at_epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(epoch_module, "_train_epoch", interrupted)
        assert main(argv) == 2


def unfinished_image_run(tmp: Path, data: Path | None = None) -> tuple[Path, list[str]]:
    """An image run interrupted in its second of three epochs; returns (run directory, the argv to resume it)."""
    data = data or write_image_folder(tmp / "img")
    out = tmp / "run"
    argv = [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "full",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "8",
    ]
    run_until_interrupted(argv, stop_at_epoch=1)
    assert (out / "checkpoint" / "latest").read_text() == "epoch-0001"
    return out, [*argv, "--resume"]


def finished_run(tmp: Path, kind: str = "image") -> tuple[Path, Path]:
    """A complete 1-epoch run; returns (run directory, its training data)."""
    if kind == "image":
        data = write_image_folder(tmp / "img")
        argv = image_train(data, tmp / f"{kind}-run")
    else:
        data = write_text_tsv(tmp / "t.tsv")
        argv = text_train(data, tmp / f"{kind}-run")
    assert main(argv) == 0
    return tmp / f"{kind}-run", data


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One row of the table: `make` builds the input under a folder and returns the command line."""

    id: str
    make: Callable[[Path, pytest.MonkeyPatch], list[str]]
    """(folder, monkeypatch) -> argv; the run directory, when there is one, is `<folder>/run`."""
    error: str | None
    """A regular expression the error line must match (after 'tunelab: error: '); None: the command succeeds."""
    check: Callable[[Path, str], None] | None = None
    """More assertions on (folder, error line) after the command."""


def truncated_jpeg(tmp, mp):
    data = write_image_folder(tmp / "img")
    Image.new("RGB", (64, 64), (200, 10, 10)).save(data / "red" / "cut.jpg")
    whole = (data / "red" / "cut.jpg").read_bytes()
    (data / "red" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return image_train(data, tmp / "run")


def not_an_image(tmp, mp):
    data = write_image_folder(tmp / "img")
    (data / "blue" / "notes.png").write_text("this is a text file with an image name\n")
    return image_train(data, tmp / "run")


def grayscale(tmp, mp):
    data = write_image_folder(tmp / "img")
    for i in range(3):
        Image.new("L", (40, 40), 60 * i).save(data / "blue" / f"gray{i}.png")
        Image.new("I;16", (40, 40), 9000 * i).save(data / "red" / f"deep{i}.png")
    return image_train(data, tmp / "run")


def rgba(tmp, mp):
    data = write_image_folder(tmp / "img")
    for i in range(3):
        Image.new("RGBA", (40, 40), (250, 10, 10, 80 * i)).save(data / "red" / f"alpha{i}.png")
        Image.new("LA", (40, 40), (30, 200)).save(data / "blue" / f"la{i}.png")
    return image_train(data, tmp / "run")


def huge_image(tmp, mp):
    data = write_image_folder(tmp / "img", per_class=4)
    huge_jpeg(data / "red" / "huge.jpg")
    return image_train(data, tmp / "run", "--val-fraction", "0.5")


def huge_png_image(tmp, mp):
    data = write_image_folder(tmp / "img")
    huge_png(data / "blue" / "huge.png")
    return image_train(data, tmp / "run")


def empty_folder(tmp, mp):
    (tmp / "img").mkdir()
    return image_train(tmp / "img", tmp / "run")


def empty_class_folder(tmp, mp):
    data = write_image_folder(tmp / "img")
    (data / "green").mkdir()
    return image_train(data, tmp / "run")


def single_class_images(tmp, mp):
    data = write_image_folder(tmp / "img")
    shutil.rmtree(data / "red")
    return image_train(data, tmp / "run")


def symlink_loop_inside(tmp, mp):
    data = write_image_folder(tmp / "img")
    os.symlink(data / "red", data / "red" / "again")  # red/again/again/... forever
    os.symlink(data, data / "blue" / "up")  # a link back to the root must not pull red images into blue
    return image_train(data, tmp / "run")


def symlink_loop_data_path(tmp, mp):
    os.symlink(tmp / "b", tmp / "a")
    os.symlink(tmp / "a", tmp / "b")
    return image_train(tmp / "a", tmp / "run")


def missing_data(tmp, mp):
    return image_train(tmp / "nowhere", tmp / "run", "--task", "image-classification")


def truncated_idx(tmp, mp):
    rng = np.random.default_rng(0)
    folder = write_idx(tmp / "idx", rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), np.arange(20, dtype=np.uint8) % 2)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    return image_train(folder, tmp / "run")


def non_utf8_text(tmp, mp):
    path = tmp / "t.tsv"
    path.write_bytes(b"sentence\tlabel\n" + TSV_ROWS.encode() + b"caf\xe9 au lait\t1\n")
    return text_train(path, tmp / "run")


def empty_text(tmp, mp):
    return text_train(table(tmp / "t.csv", ""), tmp / "run")


def blank_text(tmp, mp):
    return text_train(table(tmp / "t.tsv", "\n  \n\t\n"), tmp / "run")


def header_only(tmp, mp):
    return text_train(table(tmp / "t.tsv", "sentence\tlabel\n"), tmp / "run")


def megabyte_csv_field(tmp, mp):
    return text_train(table(tmp / "t.csv", "text,label\n" + CSV_ROWS + '"' + "good " * 200_000 + '",1\n'), tmp / "run")


def megabyte_line_without_tab(tmp, mp):
    return text_train(table(tmp / "t.tsv", "sentence\tlabel\n" + TSV_ROWS + "bad " * 250_000 + "\n"), tmp / "run")


def megabyte_label(tmp, mp):
    return text_train(
        table(tmp / "t.tsv", "sentence\tlabel\n" + TSV_ROWS + "fine film\t" + "x" * 1_000_000 + "\n"), tmp / "run"
    )


def missing_csv_column(tmp, mp):
    return text_train(table(tmp / "t.csv", "text,sentiment\n" + CSV_ROWS), tmp / "run")


def extra_csv_field(tmp, mp):
    return text_train(table(tmp / "t.csv", "text,label\n" + CSV_ROWS + "good, really good film,1\n"), tmp / "run")


def missing_csv_field(tmp, mp):
    return text_train(table(tmp / "t.csv", "text,label\ngood film,1\njust a sentence\n" + CSV_ROWS), tmp / "run")


def single_class_text(tmp, mp):
    return text_train(table(tmp / "t.tsv", "sentence\tlabel\n" + "good film\t1\n" * 10), tmp / "run")


def jsonl_not_an_object(tmp, mp):
    return text_train(table(tmp / "t.jsonl", '{"text": "good", "label": 1}\n["bad", 0]\n'), tmp / "run")


def unknown_file_type(tmp, mp):
    (tmp / "data.xlsx").write_bytes(b"PK\x03\x04")
    return text_train(tmp / "data.xlsx", tmp / "run")


def diverging_loss(tmp, mp):
    data = write_image_folder(tmp / "img")
    return [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "none",
        "--data",
        str(data),
        "--out",
        str(tmp / "run"),
        "--epochs",
        "8",
        "--batch-size",
        "6",
        "--lr",
        "1e5",
        "--grad-clip",
        "none",
        "--warmup",
        "0",
        "--no-cache",
    ]


def check_diverged(tmp, error):
    failed, kept = map(int, re.search(r"at epoch (\d+), step \d+.*\(epoch (\d+)\)", error).groups())
    assert kept == failed - 1 >= 1
    assert (tmp / "run" / "checkpoint" / "latest").read_text() == f"epoch-{kept:04d}"
    tensors, _ = load_tensors(tmp / "run" / "checkpoint" / f"epoch-{kept:04d}" / "trained.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert len((tmp / "run" / "metrics.jsonl").read_text().splitlines()) == kept


def eval_with(run: Path, data: Path) -> list[str]:
    return ["eval", "--run", str(run), "--data", str(data)]


def checkpoint_of_another_backbone(tmp, mp):
    run, data = finished_run(tmp)
    text_run, _ = finished_run(tmp, "text")
    shutil.copy(text_run / "model.safetensors", run / "model.safetensors")
    return eval_with(run, data)


def checkpoint_with_another_number_of_classes(tmp, mp):
    data = write_image_folder(tmp / "img")
    out, resume = unfinished_image_run(tmp, data)
    shutil.copytree(data / "red", data / "zebra")  # the data now has three classes; the checkpoint has two
    return resume


def predict_from_non_utf8_file(tmp, mp):
    run, _ = finished_run(tmp, "text")
    (tmp / "inputs.txt").write_bytes(b"good film\nna\xefve plot\n")
    return ["predict", "--run", str(run), "--file", str(tmp / "inputs.txt")]


def truncated_model_file(tmp, mp):
    run, data = finished_run(tmp)
    whole = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(whole[: len(whole) - 7])
    return eval_with(run, data)


def truncated_checkpoint(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    trained = out / "checkpoint" / "epoch-0001" / "trained.safetensors"
    trained.write_bytes(trained.read_bytes()[:1000])
    return resume


def newer_run_directory(tmp, mp):
    run, data = finished_run(tmp)
    summary = load_json(run / "summary.json")
    (run / "summary.json").write_text(json.dumps({**summary, "format_version": 99}))
    return eval_with(run, data)


def newer_checkpoint(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    trained = out / "checkpoint" / "epoch-0001" / "trained.safetensors"
    tensors, meta = load_tensors(trained)
    save_tensors(trained, tensors, {**meta, "format_version": "99"})
    return resume


def damaged_checkpoint_pointer(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    (tmp / "elsewhere").mkdir()
    (out / "checkpoint" / "latest").write_text("../../elsewhere")
    return resume


def yaml_config(text: str):
    def make(tmp, mp):
        data = write_image_folder(tmp / "img")
        (tmp / "exp.yaml").write_text(text.format(data=data, out=tmp / "run"))
        return ["train", "--config", str(tmp / "exp.yaml")]

    return make


def out_holds_other_files(tmp, mp):
    data = write_image_folder(tmp / "img")
    (tmp / "project" / "cache").mkdir(parents=True)
    (tmp / "project" / "cache" / "precious.txt").write_text("the user's own cache folder")
    return image_train(data, tmp / "project")


def check_project_untouched(tmp, error):
    assert (tmp / "project" / "cache" / "precious.txt").read_text() == "the user's own cache folder"
    assert sorted(p.name for p in (tmp / "project").iterdir()) == ["cache"]


def full_disk_at_second_checkpoint(tmp, mp):
    """The disk fills up while epoch 2's optimizer state is written (the write raises ENOSPC)."""
    real_fsync, real_open = fileio.os.fsync, fileio._open_temp
    writing: list[Path] = []

    def open_temp(path):
        writing.append(path)
        return real_open(path)

    def fsync(fd):
        if writing[-1].name == "optimizer.safetensors" and writing[-1].parent.name == "epoch-0002":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    mp.setattr(fileio, "_open_temp", open_temp)
    mp.setattr(fileio.os, "fsync", fsync)
    data = write_image_folder(tmp / "img")
    return [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "full",
        "--data",
        str(data),
        "--out",
        str(tmp / "run"),
        "--epochs",
        "3",
        "--batch-size",
        "8",
    ]


def check_resumes_after_disk_is_freed(tmp, error):
    assert (tmp / "run" / "checkpoint" / "latest").read_text() == "epoch-0001"
    assert not (tmp / "run" / "checkpoint" / "epoch-0002").exists()  # the partial epoch folder went with the error
    argv = [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "full",
        "--data",
        str(tmp / "img"),
        "--out",
        str(tmp / "run"),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--resume",
    ]
    assert main(argv) == 0  # the disk has room again: the case's patches are undone by now
    assert load_json(tmp / "run" / "summary.json")["epochs"] == 3


def lr_find_with(*extra: str, per_class: int = 12):
    """`tunelab lr-find` on tiny images with `extra` flags (batch 4: the 12-per-class folder gives 5 batches)."""

    def make(tmp, mp):
        data = write_image_folder(tmp / "img", per_class=per_class)
        return ["lr-find", "--model", "tiny-cnn", "--data", str(data), "--out", str(tmp / "run"), *extra]

    return make


@dataclass(frozen=True)
class _FreezeAll(Strategy):
    """A strategy that trains nothing at all (a plugin could register one): lr-find has nothing to sweep."""

    key = "freeze-all"
    summary = "nothing trains"

    def apply(self, backbone):
        for p in backbone.model.parameters():
            p.requires_grad_(False)
        return Plan(self, backbone, [])


def lr_find_nothing_to_train(tmp, mp):
    mp.setitem(REGISTRY, _FreezeAll.key, _FreezeAll)
    return lr_find_with("--strategy", "freeze-all", "--batch-size", "4")(tmp, mp)


CASES = [
    # images
    Case("truncated-jpeg", truncated_jpeg, r"img/red/cut\.jpg: cannot read image: .*replace or remove the file$"),
    Case("not-an-image", not_an_image, r"img/blue/notes\.png: cannot read image: cannot identify image file"),
    Case("grayscale-and-16-bit", grayscale, None),
    Case("rgba-and-la", rgba, None),
    Case("20000x20000-jpeg", huge_image, None),
    Case("20000x20000-png", huge_png_image, r"huge\.png: image is too large to decode safely \(20000x20000 pixels\)"),
    Case("empty-folder", empty_folder, r"img: no class folders found"),
    Case("empty-class-folder", empty_class_folder, r"img/green: class folder 'green' holds no images"),
    Case(
        "single-class-images",
        single_class_images,
        r"img: found 1 class folder \('blue'\); a classifier needs at least 2",
    ),
    Case("symlink-loop-in-a-class", symlink_loop_inside, None),
    Case("symlink-loop-as-data", symlink_loop_data_path, r"/a: a symbolic link that leads nowhere \(a loop"),
    Case("missing-data-folder", missing_data, r"nowhere: folder not found"),
    Case("truncated-idx", truncated_idx, r"train-images-idx3-ubyte: header promises 20x8x8 values .* truncated"),
    # text tables
    Case("non-utf8-text", non_utf8_text, r"t\.tsv:14: bytes b'\\xe9' are not UTF-8; save the file as UTF-8$"),
    Case("empty-text", empty_text, r"t\.csv: file is empty"),
    Case("blank-text", blank_text, r"t\.tsv: file is empty"),
    Case("header-only", header_only, r"t\.tsv: no examples after the header row$"),
    Case("1mb-csv-field", megabyte_csv_field, None),
    Case(
        "1mb-line-without-tab",
        megabyte_line_without_tab,
        r"t\.tsv:14: expected 2 tab-separated fields \(sentence, label\), found 1",
    ),
    Case("1mb-label", megabyte_label, r"t\.tsv: class 'x{50,60}\.\.\.' has 1 example\(s\)"),
    Case("missing-csv-column", missing_csv_column, r"t\.csv:1: no label column 'label'; columns are: text, sentiment$"),
    Case("extra-csv-field", extra_csv_field, r"t\.csv:14: expected 2 comma-separated fields \(text, label\), found 3"),
    Case(
        "missing-csv-field", missing_csv_field, r"t\.csv:3: expected 2 comma-separated fields \(text, label\), found 1"
    ),
    Case(
        "single-class-text",
        single_class_text,
        r"t\.tsv: every training example has the label '1'; a classifier needs at least 2",
    ),
    Case("jsonl-line-not-an-object", jsonl_not_an_object, r"t\.jsonl:2: expected a JSON object, found list$"),
    Case("unknown-file-type", unknown_file_type, r"data\.xlsx: cannot tell the task from this file"),
    # training
    Case(
        "nan-loss",
        diverging_loss,
        r"loss became (nan|inf|-inf) at epoch \d+, step \d+; lower --lr .*last good checkpoint",
        check_diverged,
    ),
    Case(
        "full-disk-writing-a-checkpoint",
        full_disk_at_second_checkpoint,
        r"cannot write .*epoch-0002/optimizer\.safetensors: No space left on device; nothing was overwritten$",
        check_resumes_after_disk_is_freed,
    ),
    Case(
        "out-holds-other-files",
        out_holds_other_files,
        r"--out .*project already holds other files \(cache/precious\.txt\)",
        check_project_untouched,
    ),
    # checkpoints and run directories
    Case(
        "checkpoint-of-another-backbone",
        checkpoint_of_another_backbone,
        r"model\.safetensors does not fit this model \(another backbone, strategy or number of classes\?\)",
    ),
    Case(
        "checkpoint-with-other-classes",
        checkpoint_with_another_number_of_classes,
        r"trained\.safetensors does not fit this model .*: head\.3\.bias has shape \(2,\), model needs \(3,\)$",
    ),
    Case(
        "predict-file-not-utf8",
        predict_from_non_utf8_file,
        r"inputs\.txt: not UTF-8 text \(invalid continuation byte at byte 12\)$",
    ),
    Case("truncated-model-file", truncated_model_file, r"model\.safetensors is not a valid safetensors checkpoint"),
    Case("truncated-checkpoint", truncated_checkpoint, r"trained\.safetensors is not a valid safetensors checkpoint"),
    Case(
        "newer-run-directory",
        newer_run_directory,
        r"run was written by a newer tunelab \(format 99\); upgrade tunelab$",
    ),
    Case("newer-checkpoint", newer_checkpoint, r"trained\.safetensors was written by a newer tunelab \(format 99"),
    Case(
        "checkpoint-pointer-leaving-the-run",
        damaged_checkpoint_pointer,
        r"checkpoint/latest is damaged: it names '\.\./\.\./elsewhere', not a checkpoint folder",
    ),
    # config files
    Case(
        "yaml-unknown-key",
        yaml_config("model: tiny-cnn\ndata: {data}\nout: {out}\nepochz: 2\n"),
        r"exp\.yaml: unknown key 'epochz'; did you mean 'epochs'\?",
    ),
    Case(
        "yaml-wrong-type",
        yaml_config("model: tiny-cnn\ndata: {data}\nout: {out}\nepochs: '3'\n"),
        r"exp\.yaml: epochs must be an integer, got '3' \(a string\) \(write the number without quotes\)$",
    ),
    Case("yaml-not-a-mapping", yaml_config("- model: tiny-cnn\n"), r"exp\.yaml: the file must be a mapping"),
    Case(
        "yaml-turns-on-remote-code",
        yaml_config("model: tiny-cnn\ndata: {data}\nout: {out}\ntrust_remote_code: true\n"),
        r"exp\.yaml: trust_remote_code can only be turned on on the command line \(--trust-remote-code\)$",
    ),
    # everyday data options (issue 22): class names, image size, split folders, predict on a folder
    Case(
        "class-names-fewer-than-labels",
        lambda tmp, mp: text_train(
            table(tmp / "t.tsv", "sentence\tlabel\n" + TSV_ROWS), tmp / "run", "--class-names", "neg"
        ),
        r"t\.tsv: labels go up to 1 but class_names gives 1 name\(s\) \(neg\); give one name for each label 0\.\.1$",
    ),
    Case(
        "class-names-unused-name",
        lambda tmp, mp: text_train(
            table(tmp / "t.tsv", "sentence\tlabel\n" + TSV_ROWS), tmp / "run", "--class-names", "a,b,c"
        ),
        r"t\.tsv: class_names gives 3 names but no example has label 2 \('c'\)",
    ),
    Case(
        "class-names-for-labels-not-integers",
        lambda tmp, mp: text_train(
            table(tmp / "t.tsv", "sentence\tlabel\n" + TSV_ROWS.replace("\t1", "\tpos").replace("\t0", "\tneg")),
            tmp / "run",
            "--class-names",
            "a,b",
        ),
        r"t\.tsv: label 'neg' is not an integer 0\.\.1: class_names names integer labels",
    ),
    Case(
        "class-names-twice",
        lambda tmp, mp: text_train(
            table(tmp / "t.tsv", "sentence\tlabel\n" + TSV_ROWS), tmp / "run", "--class-names", "a,a"
        ),
        r"^class_names lists 'a' twice; give each class its own name$",
    ),
    Case(
        "class-names-for-an-image-folder",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--class-names", "a,b"),
        r"an image folder's subfolders already name its classes: drop --class-names",
    ),
    Case(
        "image-size-for-a-text-model",
        lambda tmp, mp: text_train(write_text_tsv(tmp / "t.tsv"), tmp / "run", "--image-size", "64"),
        r"^image_size is for image models; tiny-bert is a text model: drop --image-size",
    ),
    Case(
        "resume-at-another-image-size",
        lambda tmp, mp: [*unfinished_image_run(tmp)[1], "--image-size", "48"],
        r"cannot resume .*/run: settings differ from the saved run: image_size \(32 -> 48\)",
    ),
    Case(
        "eval-on-an-unclear-split-folder",
        lambda tmp, mp: eval_with(
            finished_run(tmp)[0], [write_image_folder(tmp / "s" / n, per_class=1) for n in ("val", "valid")][0].parent
        ),
        r"/s: a split folder with val/ and valid/: it is not clear which to score; pass one, e\.g\. --data .*/s/val$",
    ),
    Case(
        "predict-on-an-empty-folder",
        lambda tmp, mp: ["predict", "--run", str(finished_run(tmp)[0]), str((tmp / "empty").mkdir() or tmp / "empty")],
        r"/empty: no images in this folder; image files end in \.jpg",
    ),
    # lr-find
    Case(
        "lr-find-start-above-end",
        lr_find_with("--start-lr", "1", "--end-lr", "0.1"),
        r"lr-find sweeps from start_lr up to end_lr, both positive; got start_lr 1\.0 and end_lr 0\.1: give e\.g\.",
    ),
    Case(
        "lr-find-zero-start-lr",
        lr_find_with("--start-lr", "0"),
        r"got start_lr 0\.0 and end_lr 10\.0: give e\.g\. --start-lr 1e-7 --end-lr 10$",
    ),
    Case("lr-find-negative-end-lr", lr_find_with("--end-lr", "-1"), r"got start_lr 1e-07 and end_lr -1\.0"),
    Case("lr-find-one-step", lr_find_with("--steps", "1"), r"command line: steps must be at least 2; got 1$"),
    Case(
        "lr-find-data-too-small",
        lr_find_with("--batch-size", "4", per_class=4),
        r"img: the training split has 6 examples; lr-find needs at least 16 \(4 steps of --batch-size 4\) .*"
        r"give more data or a smaller --batch-size$",
    ),
    Case(
        "lr-find-nothing-to-train",
        lr_find_nothing_to_train,
        r"--strategy freeze-all trains nothing on tiny-cnn: an lr range test needs parameters to train",
    ),
    # loop options
    Case(
        "metric-the-task-does-not-report",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--metric", "f1"),
        r"--metric f1: image-classification reports no such metric; "
        r"use one of accuracy, macro_f1, or auto \(accuracy\)$",
    ),
    Case(
        "grad-accumulation-zero",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--grad-accumulation", "0"),
        r"command line: grad_accumulation must be at least 1; got 0$",
    ),
    Case(
        "label-smoothing-above-one",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--label-smoothing", "1.5"),
        r"command line: label_smoothing must be between 0 and 1; got 1\.5$",
    ),
    Case(
        "unknown-class-weights",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--class-weights", "inverse"),
        r"command line: class_weights must be one of none, balanced; got 'inverse'$",
    ),
    # the recipes beyond the four strategies (issue 18)
    Case(
        "recipe-unknown-field",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--strategy", "lpft:probes=3"),
        r"strategy 'lpft:probes=3': lpft has no field 'probes'; fields: probe_epochs, probe_lr, lr_mult, decay$",
    ),
    Case(
        "recipe-phase-longer-than-the-run",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--strategy", "gradual:2:every=2"),
        r"gradual:2:every=2: stage 2 \(the bottom group\) begins at epoch 5, after a 1-epoch run ends; train for "
        r"--epochs 5 or more, or shorten the phases$",
    ),
    Case(
        "recipe-mixing-weight-outside-0-1",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--strategy", "wiseft:1.5"),
        r"wiseft:1\.5: alpha=1\.5 is outside \[0, 1\]; 0 keeps the start, 1 the trained weights$",
    ),
    Case(
        "recipe-bitfit-without-biases",
        lambda tmp, mp: image_train(
            write_image_folder(tmp / "img"), tmp / "run", "--model", register_biasless_cnn(mp), "--strategy", "bitfit"
        ),
        r"bitfit: tiny-cnn-without-biases has no bias terms in its blocks, so only the head would train; use none",
    ),
    Case(
        "recipe-frozen-embeddings-of-an-image-model",
        lambda tmp, mp: image_train(
            write_image_folder(tmp / "img"), tmp / "run", "--strategy", "full:freeze_embeddings=true"
        ),
        r"full:freeze_embeddings=True: tiny-cnn has no word embeddings to freeze \(image model\); "
        r"drop freeze_embeddings$",
    ),
    Case(
        "recipe-probe-of-no-epochs",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--strategy", "lpft:0"),
        r"lpft:0: probe_epochs must be at least 1 \(without a probe it is `full`\)$",
    ),
]


# compare executors (issue 20): refused before any run starts, nothing left in --out


def compare_on(*extra: str, out: str = "run", before: Callable[[Path, pytest.MonkeyPatch], None] | None = None):
    def make(tmp, mp):
        if before is not None:
            before(tmp, mp)
        data = write_image_folder(tmp / "img")
        argv = ["compare", "--model", "tiny-cnn", "--data", str(data), "--strategies", "none", "--epochs", "1"]
        return [*argv, "--out", str(tmp / out), *(e.format(port=closed_port()) for e in extra)]

    return make


def closed_port() -> int:
    """A port on this machine nothing listens on (bound, then closed again)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES += [
    Case(
        "compare-workers-0",
        compare_on("--executor", "local", "--workers", "0"),
        r"^command line: workers must be at least 1; got 0$",
    ),
    Case(
        "compare-workers-with-serial",
        compare_on("--workers", "2"),
        r"^--workers 2 needs --executor local; --executor serial runs one at a time: add --executor local or drop",
    ),
    Case(
        "compare-ray-not-installed",
        compare_on("--executor", "ray", before=lambda tmp, mp: mp.setitem(sys.modules, "ray", None)),
        r"^--executor ray needs Ray, which is not installed: pip install 'tunelab\[ray\]'$",
    ),
    Case(
        "compare-unreachable-ray-address",
        compare_on(
            "--executor", "ray", "--ray-address", "127.0.0.1:{port}", before=lambda tmp, mp: pytest.importorskip("ray")
        ),
        r"^cannot reach the Ray cluster at --ray-address 127\.0\.0\.1:\d+ \(Connection refused within 10 s\)",
    ),
    Case(
        "compare-out-not-writable",
        compare_on("--executor", "local", "--workers", "2", out="img/red/red0.png/cmp"),
        r"^cannot create --out .*/img/red/red0\.png/cmp: Not a directory; give a folder you can write to$",
    ),
]


# experiment trackers (issue 20): checked before the run folder (or the compare's --out) is made


def without_modules(*names: str):
    def hide(tmp, mp):
        for name in names:
            mp.setitem(sys.modules, name, None)

    return hide


def train_without_mlflow(tmp, mp):
    without_modules("mlflow")(tmp, mp)
    return image_train(write_image_folder(tmp / "img"), tmp / "run", "--log-with", "tensorboard,mlflow")


TRACKER_NAMES = "aim, clearml, comet_ml, dvclive, mlflow, swanlab, tensorboard, trackio, wandb"

CASES += [
    Case(
        "tracker-unknown",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--log-with", "tensorbord"),
        rf"^--log-with tensorbord: no such tracker; choose from {TRACKER_NAMES}$",
    ),
    Case(
        "tracker-package-missing",
        train_without_mlflow,
        r"^--log-with mlflow needs mlflow, which is not installed: pip install 'tunelab\[track\]' \(or mlflow\)$",
    ),
    Case(
        "compare-tracker-package-missing",
        compare_on("--log-with", "tensorboard", before=without_modules("tensorboard", "tensorboardX")),
        r"^--log-with tensorboard needs tensorboard, which is not installed: pip install 'tunelab\[track\]'",
        lambda tmp, line: assert_no_folder(tmp / "run"),
    ),
]


def assert_no_folder(path: Path) -> None:
    assert not path.exists(), f"{path} was created"


# domain adaptation (issue 19): --target-data and --adapt, refused before anything trains


def adapt_image(extra_target, *extra: str):
    """An image run with --adapt; `extra_target(tmp)` builds the --target-data path."""

    def make(tmp, mp):
        data = write_image_folder(tmp / "img")
        return image_train(data, tmp / "run", "--strategy", "full", "--target-data", str(extra_target(tmp)), *extra)

    return make


def adapt_text(extra_target, *extra: str):
    """A text run with --adapt; `extra_target(tmp)` builds the --target-data path."""

    def make(tmp, mp):
        data = write_text_tsv(tmp / "t.tsv")
        return text_train(data, tmp / "run", "--strategy", "full", "--target-data", str(extra_target(tmp)), *extra)

    return make


def adapt_relations(tmp, mp):
    target = table(tmp / "target.txt", "one text\nanother\n")
    data = write_semeval(tmp / "relations.txt")
    return text_train(data, tmp / "run", "--strategy", "full", "--target-data", str(target), "--adapt", "dann")


def empty_dir(path: Path) -> Path:
    path.mkdir()
    return path


CASES += [
    Case(
        "domain-target-text-for-an-image-model",
        adapt_image(lambda tmp: table(tmp / "target.tsv", "sentence\tlabel\na text\t1\n"), "--adapt", "dann"),
        r"^target_data .*target\.tsv is a file, but the model takes images: give a folder of images",
    ),
    Case(
        "domain-target-images-for-a-text-model",
        adapt_text(lambda tmp: write_image_folder(tmp / "target"), "--adapt", "dann"),
        r"^target_data .*target is a folder, but the model takes text: give a \.csv, \.tsv, \.jsonl or \.txt file",
    ),
    Case(
        "domain-target-empty-folder",
        adapt_image(lambda tmp: empty_dir(tmp / "target"), "--adapt", "dann"),
        r"target: no images in this folder",
    ),
    Case(
        "domain-target-empty-table",
        adapt_text(lambda tmp: table(tmp / "target.tsv", "sentence\tlabel\n"), "--adapt", "dann"),
        r"target\.tsv: no texts after the header row$",
    ),
    Case(
        "domain-target-one-example",
        adapt_text(lambda tmp: table(tmp / "target.txt", "a single text\n"), "--adapt", "dann"),
        r"^target_data .*target\.txt holds 1 example; domain adaptation needs at least 2$",
    ),
    Case(
        "domain-target-missing",
        adapt_image(lambda tmp: tmp / "nowhere", "--adapt", "adabn"),
        r"^target_data .*nowhere: no such file or folder$",
    ),
    Case(
        "domain-adapt-without-target-data",
        lambda tmp, mp: image_train(write_image_folder(tmp / "img"), tmp / "run", "--adapt", "dann"),
        r"^--adapt dann needs unlabelled target-domain examples: give --target-data PATH",
    ),
    Case(
        "domain-target-data-without-adapt",
        adapt_image(lambda tmp: write_image_folder(tmp / "target")),
        r"^--target-data .*target is only used for domain adaptation: add --adapt dann or --adapt adabn",
    ),
    Case(
        "domain-adabn-on-a-model-without-batchnorm",
        adapt_text(lambda tmp: table(tmp / "target.txt", "one text\nanother\n"), "--adapt", "adabn"),
        r"^--adapt adabn re-estimates BatchNorm statistics, but tiny-bert has no BatchNorm layer",
    ),
    Case(
        "domain-dann-with-strategy-none",
        adapt_image(lambda tmp: write_image_folder(tmp / "target"), "--adapt", "dann", "--strategy", "none"),
        r"^--adapt dann trains the feature layers against a domain classifier, but strategy none trains only the head",
    ),
    Case(
        "domain-adapt-on-a-relation-task",
        adapt_relations,
        r"^--adapt dann works for image-classification, text-classification and token-classification; task "
        r"relation-classification is not supported$",
    ),
    Case(
        "domain-labelled-target-text-is-used-unlabelled",
        adapt_text(lambda tmp: write_text_tsv(tmp / "target.tsv"), "--adapt", "dann"),
        None,
    ),
]


# length grouping (issue 21): the training order is part of what a run trains, so a resume cannot change it

CASES += [
    Case(
        "resume-with-length-grouping-turned-on",
        lambda tmp, mp: [*unfinished_image_run(tmp)[1], "--length-grouping"],
        r"cannot resume .*/run: settings differ from the saved run: length_grouping \(false -> true\); resume with",
    ),
]


def _peak_tracking() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the resident-memory high-water mark, to the current size
        return True
    except OSError:
        return False


def _memory_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (symlinks not followed) with a hash of its content."""
    out = {}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            out[path.relative_to(folder).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "link"
            )
    return out


def assert_nothing_half_written(tmp: Path, before: dict[str, str], run: Path) -> None:
    """No temporary files or cache; and either nothing changed at all, or the run committed new epochs and
    its latest checkpoint loads."""
    after = snapshot(tmp)
    assert not [p for p in after if p.endswith(".tmp")], "temporary files of atomic writes left behind"
    cache = (run / "cache").relative_to(tmp).as_posix() + "/"
    left = (run / "cache").exists() and not (run / "cache").is_symlink()  # a planted link is the user's to remove
    assert not left or any(k.startswith(cache) for k in before), "feature cache left behind"
    latest = run / "checkpoint" / "latest"
    pointer = latest.relative_to(tmp).as_posix()
    if latest.is_file() and after.get(pointer) != before.get(pointer):  # failed mid-run, after committing epochs
        folder = run / "checkpoint" / latest.read_text()
        load_tensors(folder / "trained.safetensors")
        load_tensors(folder / "optimizer.safetensors")
        assert {"epoch", "scheduler", "metrics"} <= set(load_json(folder / "state.json"))
        assert not (run / "summary.json").exists()
    else:
        assert after == before, f"a failed command changed {sorted(set(after.items()) ^ set(before.items()))[:4]}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    check_case(case, tmp_path, capsys, monkeypatch)


def check_case(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    """Run one row of a bad-input table through the CLI and check the contract (other tables import this)."""
    argv = case.make(tmp_path, monkeypatch)
    capsys.readouterr()
    before = snapshot(tmp_path)
    run = Path(argv[argv.index("--out") + 1]) if "--out" in argv else tmp_path / "run"
    if "--run" in argv:
        run = Path(argv[argv.index("--run") + 1])
    track_peak = case.id.startswith("20000x20000") and _peak_tracking()
    rss_before = _memory_kib("VmRSS") if track_peak else 0

    code = main(argv)
    monkeypatch.undo()

    err = capsys.readouterr().err
    lines = err.splitlines()
    if case.error is None:
        assert code == 0, err[-2000:]
        assert load_json(run / "summary.json")["epochs"] >= 1
        assert sorted(p.name for p in run.iterdir()) == [
            "config.yaml",
            "metrics.jsonl",
            "model.safetensors",
            "summary.json",
        ]
        if track_peak:  # the full 20000x20000 image would be 400 MB as gray, 1.2 GB as RGB
            assert (_memory_kib("VmHWM") - rss_before) / 1024 < 300
        return
    assert code == 2, err[-2000:]
    errors = [line for line in lines if "error" in line]
    assert errors == [lines[-1]] and lines[-1].startswith("tunelab: error: "), lines[-5:]
    message = lines[-1].removeprefix("tunelab: error: ")
    assert len(lines[-1]) <= MAX_MESSAGE, lines[-1][:200]

    assert re.search(case.error, message), message
    assert_nothing_half_written(tmp_path, before, run)
    if case.check is not None:
        case.check(tmp_path, message)


def test_the_table_is_big_enough():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.slow
def test_interrupted_compare_keeps_finished_runs_and_resumes(tmp_path, capsys):
    """Ctrl-C (SIGINT) in the middle of a comparison, then the same command again: finished runs are skipped,
    the cut-off run resumes from its checkpoint, and the report covers every run."""
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "cmp"
    # 12 epochs of batch 2: seconds of training left after the first checkpoint, so the signal lands mid-run
    # however fast or loaded the machine (6 epochs of batch 4 could finish before it arrived).
    argv = [
        "compare",
        "--model",
        "tiny-cnn",
        "--data",
        str(data),
        "--strategies",
        "none,full",
        "--epochs",
        "12",
        "--batch-size",
        "2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "HF_HUB_OFFLINE": "1"}
    # SIGINT back to its default in the child: a test run started in the background by a non-interactive
    # shell (as CI may be) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    full = out / "runs" / "fraction-1" / "full" / "s0"
    deadline = time.monotonic() + 240
    while not (full / "checkpoint" / "latest").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "compare ended before the second run checkpointed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    assert err.splitlines()[-1].startswith("tunelab: error: interrupted; run the same command again")
    assert (out / "runs" / "fraction-1" / "none" / "s0" / "summary.json").is_file()
    assert not (full / "summary.json").exists()
    done_before = len((full / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done_before < 12

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[1/2] none, seed 0: done before, skipped" in err
    assert "[2/2] full, seed 0 (resuming)" in err and f"resuming after epoch {done_before}" in err
    assert load_json(full / "summary.json")["epochs"] == 12
    assert (out / "results.csv").read_text().count("\n") == 3  # header + two strategies
    assert not [p for p in snapshot(out) if p.endswith(".tmp") or "/checkpoint" in p]


def test_diverged_run_has_no_nan_anywhere_it_saved(tmp_path, capsys, monkeypatch):
    """The step that produced a non-finite loss never updates the weights that stay on disk."""
    argv = diverging_loss(tmp_path, monkeypatch)
    assert main(argv) == 2
    tensors, _ = load_tensors(tmp_path / "run" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values())
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in metrics)
