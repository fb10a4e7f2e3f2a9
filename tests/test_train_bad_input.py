"""Bad input to `tunelab train`: one line naming the file (and line), exit code 2, no complete-looking run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main


def train_cli(capsys, data, out, *extra, model="tiny-cnn"):
    code = main(
        [
            "train",
            "--model",
            model,
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
    )
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def assert_failed_cleanly(code, err, out, *fragments):
    assert code == 2
    assert err.startswith("tunelab: error: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (out / "summary.json").exists()


def test_empty_class_folder(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    (data / "green").mkdir()
    code, err = train_cli(capsys, data, tmp_path / "run")
    assert_failed_cleanly(code, err, tmp_path / "run", "green")


def test_corrupt_image(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    code, err = train_cli(capsys, data, tmp_path / "run")
    assert_failed_cleanly(code, err, tmp_path / "run", "broken.png", "cannot read image")


def test_text_row_without_label(tmp_path, capsys):
    data = write_text_tsv(tmp_path / "t.tsv")
    data.write_text(data.read_text() + "a sentence with no label\t\n")
    code, err = train_cli(capsys, data, tmp_path / "run", model="tiny-bert")
    assert_failed_cleanly(code, err, tmp_path / "run", "t.tsv:44")


def test_validation_label_not_in_training(tmp_path, capsys):
    data = write_text_tsv(tmp_path / "t.tsv")
    val = tmp_path / "v.tsv"
    val.write_text("sentence\tlabel\ngood film\t1\nwhat is this\t7\n")
    code, err = train_cli(capsys, data, tmp_path / "run", "--val-data", str(val), model="tiny-bert")
    assert_failed_cleanly(code, err, tmp_path / "run", "v.tsv:3", "label '7' not seen in training")


def test_unknown_column(tmp_path, capsys):
    data = write_text_tsv(tmp_path / "t.tsv")
    code, err = train_cli(capsys, data, tmp_path / "run", "--label-column", "sentiment", model="tiny-bert")
    assert_failed_cleanly(code, err, tmp_path / "run", "t.tsv", "sentiment")


def test_too_few_examples_to_split(tmp_path, capsys):
    data = tmp_path / "t.tsv"
    data.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\nfine film\t0\n")
    code, err = train_cli(capsys, data, tmp_path / "run", model="tiny-bert")
    assert_failed_cleanly(code, err, tmp_path / "run", "t.tsv", "'1'")


def test_text_data_with_an_image_model(tmp_path, capsys):
    data = write_text_tsv(tmp_path / "t.tsv")
    code, err = train_cli(capsys, data, tmp_path / "run")
    assert_failed_cleanly(code, err, tmp_path / "run", "tiny-cnn is a model for images")


def test_missing_data_path(tmp_path, capsys):
    code, err = train_cli(capsys, tmp_path / "nowhere.csv", tmp_path / "run", model="tiny-bert")
    assert_failed_cleanly(code, err, tmp_path / "run", "nowhere.csv")


@pytest.mark.slow
def test_two_process_ddp_writes_one_run_directory(tmp_path):
    """Two CPU processes (gloo) via accelerate's launcher train one model and write one run directory."""
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    accelerate = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    proc = subprocess.run(
        [
            *accelerate,
            "-m",
            "tunelab",
            "train",
            "--model",
            "tiny-cnn",
            "--strategy",
            "retrain:2",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 2 and summary["cached_blocks"] == 2
    assert proc.stderr.count("run saved in") == 1  # only the main process writes and reports
    files = sorted(p.name for p in out.iterdir())
    assert files == ["config.yaml", "metrics.jsonl", "model.safetensors", "summary.json"]
