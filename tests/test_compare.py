"""`tunelab compare`: the run plan, folds and fractions, resuming, and the report end to end on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunelab.runs.loop as train_module
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.comparison.grid import CompareConfig, compare, planned_runs
from tunelab.data import load_text
from tunelab.errors import TunelabError
from tunelab.runs.loaders import select_splits
from tunelab.strategies import REGISTRY


def test_the_plan_covers_fractions_strategies_seeds_and_folds(tmp_path):
    config = CompareConfig(
        model="tiny-cnn",
        data="d",
        out=str(tmp_path),
        strategies=("none", "retrain:2"),
        seeds=2,
        folds=3,
        data_fractions=(0.5, 1.0),
        lrs=("retrain:2=0.01",),
    )
    runs = planned_runs(config)
    assert len(runs) == 2 * 2 * 2 * 3
    assert len({r.out for r in runs}) == len(runs)
    assert {r.lr for r in runs if r.strategy == "retrain:2"} == {0.01}
    assert {r.lr for r in runs if r.strategy == "none"} == {None}
    assert Path(runs[0].out).relative_to(tmp_path).parts == ("runs", "fraction-0.5", "none", "s0-fold0")
    seeds_and_folds = {(r.seed, r.fold) for r in runs if r.strategy == "none" and r.train_fraction == 1.0}
    assert seeds_and_folds == {(s, f) for s in range(2) for f in range(3)}


def test_the_default_strategies_are_every_registered_strategy(tmp_path):
    runs = planned_runs(CompareConfig(model="tiny-cnn", data="d", out=str(tmp_path)))
    assert [r.strategy for r in runs] == list(REGISTRY)
    with pytest.raises(TunelabError, match="--strategies is empty"):
        planned_runs(CompareConfig(model="tiny-cnn", data="d", out=str(tmp_path), strategies=()))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"strategies": ("none", "sideways")}, "unknown strategy 'sideways'"),
        ({"strategies": ("none", "none")}, "twice"),
        ({"lrs": ("full=0.1",)}, "with a strategy from --strategies"),
        ({"lrs": ("none=fast",)}, "'fast' is not a number"),
    ],
)
def test_bad_plans_fail_before_training(tmp_path, changes, message):
    with pytest.raises(TunelabError, match=message):
        config = {"model": "tiny-cnn", "data": "d", "out": str(tmp_path), "strategies": ("none",)}
        planned_runs(CompareConfig(**config | changes))


def test_folds_are_stratified_disjoint_and_cover_the_pool(tmp_path):
    splits = load_text(write_text_tsv(tmp_path / "t.tsv"), val_fraction=0.25)
    pool = sorted(splits.train.inputs + splits.val.inputs)
    seen = []
    for fold in range(3):
        s = select_splits(splits, folds=3, fold=fold, train_fraction=1.0, seed=0)
        assert sorted(s.train.inputs + s.val.inputs) == pool
        assert abs(s.val.labels.count(0) - s.val.labels.count(1)) <= 1  # stratified: classes are balanced
        seen += s.val.inputs
    assert sorted(seen) == pool  # every example validates exactly once


def test_fractions_shrink_training_only(tmp_path):
    splits = load_text(write_text_tsv(tmp_path / "t.tsv"), val_fraction=0.25)
    small = select_splits(splits, folds=None, fold=0, train_fraction=0.3, seed=0)
    assert small.val == splits.val
    assert len(small.train) < len(splits.train) and set(small.train.labels) == {0, 1}
    assert set(small.train.inputs) <= set(splits.train.inputs)


def test_compare_end_to_end_and_resume_skips_finished_runs(tmp_path, monkeypatch):
    data = write_image_folder(tmp_path / "img")
    config = CompareConfig(
        model="tiny-cnn",
        data=str(data),
        out=str(tmp_path / "cmp"),
        strategies=("none", "retrain:3", "scratch"),
        epochs=2,
        seeds=2,
        batch_size=8,
    )
    trained = []
    real_train = train_module.train

    def counting_train(run):
        trained.append(run.out)
        if len(trained) == 4:
            raise KeyboardInterrupt
        return real_train(run)

    monkeypatch.setattr(train_module, "train", counting_train)
    with pytest.raises(KeyboardInterrupt):
        compare(config)
    assert len(trained) == 4
    trained.clear()
    report = compare(config)
    assert len(trained) == 3  # the three unfinished runs only
    out = tmp_path / "cmp"
    assert report == out / "report.html"
    for name in ("results.csv", "results.md", "learning_curves.png", "cost_vs_metric.png", "report.html"):
        assert (out / name).is_file(), name
    md = (out / "results.md").read_text()
    for spec in ("none", "retrain:3", "scratch"):
        assert spec in md
    summary = json.loads((out / "runs" / "fraction-1" / "none" / "s1" / "summary.json").read_text())
    assert summary["strategy"] == "none" and summary["epochs"] == 2

    from tunelab.cli import main

    assert main(["report", str(out / "runs"), "--out", str(tmp_path / "rebuilt")]) == 0  # rebuilt from run dirs alone
    assert (tmp_path / "rebuilt" / "results.md").read_text() == md
