"""`tunelab lr-find`, the lr range test, on tiny-cnn and tiny images: real model, optimizer and files.

The sweep must do what its plot claims (the head lr grows geometrically, every parameter group at its
strategy's scale), read the curve sensibly (the suggestion inside the range, below where it diverged),
stop once the loss has clearly diverged, write its three files, leave every other folder as it was, and
give the same numbers from Python as from the command line. Bad input is in tests/test_bad_inputs.py.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from tunelab.cli import main
from tunelab.runs.lr_find import MIN_BATCHES, schedule
from tunelab.runs.lr_find_result import read_curve
from tunelab.runs.prepare import prepare
from tunelab.settings import LrFindConfig, TrainConfig, field_docs

TINY = {"model": "tiny-cnn", "batch_size": 4}
"""The 12-per-class image folder leaves 20 training images: 5 batches of 4 a pass (MIN_BATCHES is 4)."""


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: a tiny model gains nothing from two, and on a shared 2-core machine two threads
    waiting on each other made these tests 10x slower (1.2 s against 18 s for a 40-step full sweep)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` with a hash of its content."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            out[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def diverged(images, tmp_path_factory):
    """A head-only sweep pushed to lr 1000 (AdamW steps of that size blow the loss up): one run, many checks."""
    from tunelab.runs.lr_find import lr_find

    out = tmp_path_factory.mktemp("diverged")
    config = LrFindConfig(**TINY, data=str(images), strategy="none", start_lr=1e-5, end_lr=1e3, steps=60, out=str(out))
    return config, lr_find(config, progress=False)


def test_the_head_lr_grows_geometrically_and_every_group_keeps_its_scale(images, tmp_path):
    from tunelab.runs.lr_find import lr_find

    strategy = "full:decay=0.5"  # layer-wise decay: a different scale for every block
    config = LrFindConfig(
        **TINY, data=str(images), strategy=strategy, start_lr=1e-6, end_lr=1e-2, steps=9, out=str(tmp_path)
    )
    result = lr_find(config, progress=False)

    assert result.lrs[0] == 1e-6 and np.diff(np.log10(result.lrs)) == pytest.approx([0.5] * 8, rel=1e-9)
    assert result.lrs[-1] == pytest.approx(1e-2) and "reached end_lr" in result.stopped
    expected = {g["name"]: g["lr"] for g in prepare("tiny-cnn", strategy, 2).optimizer_groups(1.0)}
    assert set(result.group_lrs) == set(expected) and len(set(expected.values())) >= 4
    for name, lrs in result.group_lrs.items():  # as the optimizer held them at each step
        assert lrs == pytest.approx([lr * expected[name] for lr in result.lrs], rel=1e-9), name


def test_the_sweep_stops_once_the_smoothed_loss_exceeds_four_times_its_best(diverged):
    config, result = diverged
    assert len(result.lrs) < config.steps and result.stopped.startswith(f"diverged at lr {result.lrs[-1]:.2g}")
    assert result.smoothed[-1] > 4 * min(result.smoothed)
    assert all(s <= 4 * min(result.smoothed[: i + 1]) for i, s in enumerate(result.smoothed[:-1]))
    assert result.lrs == pytest.approx(list(schedule(config.start_lr, config.end_lr, config.steps)[: len(result.lrs)]))


def test_the_smoothed_loss_is_the_bias_corrected_moving_average(diverged):
    _, result = diverged
    average = 0.0
    for i, (loss, smooth) in enumerate(zip(result.losses, result.smoothed)):
        average = 0.98 * average + 0.02 * loss
        assert smooth == pytest.approx(average / (1 - 0.98 ** (i + 1)), rel=1e-9)
    assert result.smoothed[0] == pytest.approx(result.losses[0])  # not pulled towards zero at the start


def test_the_suggestion_is_inside_the_range_and_below_the_divergence(diverged):
    config, result = diverged
    assert config.start_lr <= result.suggested_lr < result.minimum_lr < result.lrs[-1]
    assert result.suggested_lr == pytest.approx(result.minimum_lr / 10)
    assert result.steepest_lr is not None and config.start_lr <= result.steepest_lr <= result.minimum_lr
    skip = config.steps // 10  # the first tenth is left out of both readings
    assert min(result.smoothed[skip:]) == result.smoothed[result.lrs.index(result.minimum_lr)]


def test_reading_a_curve_ignores_the_noisy_start_and_finds_the_steepest_fall():
    lrs = list(schedule(1e-6, 1.0, 61))  # 10 steps a decade
    x = np.log10(lrs)
    smoothed = list(2.0 - np.tanh(2 * (x + 3)) + np.where(x > -1, 8 * (x + 1) ** 2, 0.0))  # fastest fall at 1e-3
    smoothed[1] = 0.5  # a dip among the first few steps that must not count
    readings = read_curve(lrs, smoothed, skip=6)
    assert readings.steepest_lr == pytest.approx(1e-3)
    assert 1e-2 <= readings.minimum_lr <= 0.11  # the fall ends at 0.1, where the rise begins
    assert read_curve(lrs, smoothed, skip=0).minimum_lr == lrs[1]
    rising = read_curve(lrs, sorted(smoothed), skip=0)
    assert rising.steepest_lr is None and rising.minimum_lr == lrs[0]


def test_the_cli_writes_the_plot_and_table_and_prints_one_suggestion_the_api_repeats(images, tmp_path, capsys):
    out = tmp_path / "lrf"
    flags = ["--data", str(images), "--strategy", "none", "--steps", "30", "--start-lr", "1e-4", "--end-lr", "100"]
    assert main(["lr-find", "--model", "tiny-cnn", "--batch-size", "4", *flags, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "lr_find.json").read_text())
    assert captured.out == f"suggested --lr {summary['suggested_lr']:.2g}\n"
    assert "steepest descent" in captured.err and "minimum / 10" in captured.err and "short run" in captured.err

    assert sorted(p.name for p in out.iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.png"]
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "lr_find.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed"] and len(rows) == summary["steps_done"]
    assert summary["suggested_by"] == "minimum / 10" and summary["group_scales"] == {"head": 1.0, "head.no_decay": 1.0}

    config = LrFindConfig(
        **TINY, data=str(images), strategy="none", steps=30, start_lr=1e-4, end_lr=100, out=str(tmp_path / "api")
    )
    result = tunelab.lr_find(config, progress=False)  # the public name
    assert isinstance(result, tunelab.LrFindResult) and dataclasses.is_dataclass(result)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.suggested_lr = 1.0
    assert [float(r["lr"]) for r in rows] == list(result.lrs)
    assert [float(r["loss"]) for r in rows] == pytest.approx(result.losses, rel=1e-6)
    assert result.suggested_lr == pytest.approx(summary["suggested_lr"], rel=1e-6)
    assert result.files.plot == tmp_path / "api" / "lr_find.png" and result.files.plot.is_file()


def test_a_run_used_as_the_model_and_the_data_stay_untouched(images, tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(images), "--epochs", "1"]
    assert main([*train, "--batch-size", "8", "--out", str(run)]) == 0
    before = {"run": snapshot(run), "data": snapshot(images)}

    out = tmp_path / "lrf"
    argv = ["lr-find", "--model", str(run), "--data", str(images), "--strategy", "full", "--batch-size", "4"]
    assert main([*argv, "--steps", "6", "--out", str(out)]) == 0
    assert {"run": snapshot(run), "data": snapshot(images)} == before
    assert sorted(p.name for p in out.iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.png"]  # no cache left
    assert capsys.readouterr().out.startswith("suggested --lr ")


def test_every_train_setting_reaches_the_run_the_sweep_tests():
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    own = {f.name: f for f in dataclasses.fields(LrFindConfig)}
    assert set(train_fields) - {"resume"} <= set(own)  # a train command line works with train -> lr-find
    docs = field_docs(LrFindConfig)
    for name in set(train_fields) - {"resume", "out"}:  # declared alike: default, limits, doc
        assert (own[name].default, own[name].metadata) == (train_fields[name].default, train_fields[name].metadata)
        assert docs[name] == field_docs(TrainConfig)[name], name
    changed = {"batch_size": 7, "optimizer": "sgd", "label_smoothing": 0.1, "strategy": "lora:4", "fold": 1}
    config = LrFindConfig(model="m", data="d", folds=3, train_fraction=0.5, seed=3, **changed)
    train = config.as_train_config()
    assert all(getattr(train, name) == getattr(config, name) for name in set(train_fields) - {"resume"})
    assert (train.train_fraction, train.seed, train.fold, train.strategy) == (0.5, 3, 1, "lora:4")


def test_help_explains_the_test_its_caveat_and_its_outputs(capsys):
    with pytest.raises(SystemExit):
        main(["lr-find", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("geometrically", "4x", "starting point", "short run", "lr_find.png", "suggested --lr", "0.1x"):
        assert words in text, words
    assert "lr-find ignores it" in text  # on --lr, --epochs, --scheduler ...
    assert MIN_BATCHES >= 2 and math.isfinite(LrFindConfig.end_lr)


def test_the_sweep_ignores_domain_adaptation_and_tracking_as_its_help_says():
    sweep = LrFindConfig(
        model="tiny-cnn", data="d", adapt="dann", target_data="t", adapt_weight=0.5, log_with=("tensorboard",)
    )
    run = sweep.as_train_config()
    assert (run.adapt, run.target_data, run.adapt_weight, run.log_with, run.tracking_dir) == (None, None, 1.0, (), None)
    assert (run.model, run.data) == ("tiny-cnn", "d")  # the rest is handed on
