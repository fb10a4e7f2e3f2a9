"""`tunelab compare` without training: the plan, its folders, its checks before anything trains, its progress,
and how it starts and reads a child run. The runs themselves (child processes) are in test_compare_process.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import build_parser, main
from tunelab.comparison.executor import failure_reason, last_line, train_command
from tunelab.comparison.grid import (
    CompareConfig,
    Timer,
    augmentation_line,
    check_report_scope,
    clock,
    planned_runs,
    run_label,
    slug,
)
from tunelab.data import load_text
from tunelab.errors import TunelabError
from tunelab.fileio import save_json
from tunelab.runs.loaders import select_splits
from tunelab.settings import TrainConfig, add_arguments, resolve, to_yaml
from tunelab.settings.fields import to_argv
from tunelab.strategies import REGISTRY


def plan(tmp_path, **changes) -> CompareConfig:
    return CompareConfig(**{"model": "tiny-cnn", "data": "d", "out": str(tmp_path), "strategies": ("none",)} | changes)


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


@pytest.mark.parametrize("given", [(), ("",), (" ", "")])
def test_no_strategy_given_is_refused(tmp_path, given):
    with pytest.raises(TunelabError, match="no strategy given"):
        planned_runs(plan(tmp_path, strategies=given))


def test_on_the_command_line_none_is_the_strategy_and_a_bare_comma_is_no_strategy(tmp_path, capsys):
    args = build_parser().parse_args(["compare", "--model", "tiny-cnn", "--strategies", "none", "--out", str(tmp_path)])
    assert [r.strategy for r in planned_runs(resolve(CompareConfig, args))] == ["none"]
    assert main(["compare", "--model", "tiny-cnn", "--data", "d", "--strategies", ",", "--out", str(tmp_path)]) == 2
    assert "no strategy given" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"strategies": ("none", "sideways")}, "unknown strategy 'sideways'"),
        ({"strategies": ("none", "none")}, "listed twice"),
        ({"strategies": ("lora", "lora:8")}, r"'lora' and 'lora:8' \(both lora\).*listed twice"),
        ({"strategies": ("full:decay=0.80", "full:decay=0.8")}, "listed twice"),
        ({"lrs": ("full=0.1",)}, "with a strategy from --strategies"),
        ({"lrs": ("none",)}, "expected <strategy>=<lr>"),
        ({"lrs": ("none=fast",)}, "'fast' is not a number"),
        ({"lrs": ("none=-1",)}, "positive finite number"),
        ({"lrs": ("none=0",)}, "positive finite number"),
        ({"lrs": ("none=nan",)}, "positive finite number"),
        ({"lrs": ("none=inf",)}, "positive finite number"),
        ({"lrs": ("none=-inf",)}, "positive finite number"),
    ],
)
def test_bad_plans_fail_before_training(tmp_path, changes, message):
    with pytest.raises(TunelabError, match=message):
        planned_runs(plan(tmp_path, **changes))
    assert not any(tmp_path.iterdir())


def test_lrs_name_a_strategy_by_any_spelling_of_its_spec(tmp_path):
    runs = planned_runs(
        plan(tmp_path, strategies=("lora:8", "full:decay=0.80"), lrs=("lora=0.5", "full:decay=.8=2e-3"))
    )
    assert {r.strategy: r.lr for r in runs} == {"lora": 0.5, "full:decay=0.8": 2e-3}


# ---------------------------------------------------------------- folders: one per strategy, always inside


def test_specs_that_differ_get_different_folders_named_from_the_canonical_spec(tmp_path):
    runs = planned_runs(plan(tmp_path, strategies=("lora:alpha=1e-1", "lora:alpha=1e+1", "retrain:2", "lora:8")))
    folders = [Path(r.out).relative_to(tmp_path / "runs" / "fraction-1").parts[0] for r in runs]
    assert [r.strategy for r in runs] == ["lora:alpha=0.1", "lora:alpha=10.0", "retrain:2", "lora"]
    assert len(set(folders)) == 4
    assert folders[2:] == ["retrain-2", "lora"]  # simple specs read as themselves
    assert folders[0].startswith("lora-alpha-0.1_") and folders[1].startswith("lora-alpha-10.0_")


def test_simple_slugs_read_back_and_others_carry_a_hash():
    assert slug("retrain:4") == "retrain-4" and slug("lora:alpha.x") == "lora-alpha.x"
    assert slug("lora:alpha=1e-1") != slug("lora:alpha=1e+1")
    assert slug("a:b") != slug("a-b") and "_" in slug("a-b")
    assert slug("..") != ".." and slug("").startswith("run_")


@settings(max_examples=300, deadline=None)
@given(specs=st.lists(st.text(max_size=20), min_size=2, max_size=6, unique=True))
def test_the_slug_is_injective(specs):
    assert len({slug(s) for s in specs}) == len(specs)


@settings(max_examples=200, deadline=None)
@given(spec=st.text(max_size=30))
def test_a_slug_is_one_safe_folder_name(spec):
    name = slug(spec)
    assert name and "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")
    base = Path("/cmp/runs/fraction-1")
    assert (base / name).resolve().parent == base


# ---------------------------------------------------------------- equal conditions


@pytest.mark.parametrize("augment, expected", [(None, False), (False, False), (True, True)])
def test_every_run_of_a_compare_gets_one_augmentation_policy(tmp_path, augment, expected):
    runs = planned_runs(plan(tmp_path, strategies=("none", "full", "retrain:2", "scratch"), seeds=2, augment=augment))
    assert {r.augment for r in runs} == {expected}
    line = augmentation_line(plan(tmp_path, augment=augment))
    assert line.startswith(f"augmentation: {'on' if expected else 'off'} for every strategy")


def test_compare_help_says_what_augmentation_is_in_a_compare(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "In compare, unset means off for every strategy" in help_text
    assert "--rerun" in help_text and "--replace-report" in help_text


# ---------------------------------------------------------------- each run is `tunelab train <flags>`


def test_a_child_gets_every_setting_as_a_flag_and_reads_back_the_same_config(tmp_path):
    config = TrainConfig(
        model="tiny-cnn",
        data=str(tmp_path / "data with spaces"),
        strategy="full:decay=0.8",
        out=str(tmp_path / "run"),
        text_column="-starts-with-a-dash",
        max_length=17,
        val_fraction=0.3,
        epochs=2,
        batch_size=5,
        lr=3e-4,
        weight_decay=0.0,
        warmup=0.25,
        grad_clip=None,
        patience=3,
        augment=False,
        cache=False,
        cache_memory_mb=64,
        trust_remote_code=True,
        seed=4,
        train_fraction=0.5,
        resume=True,
    )
    command = train_command(config)
    assert command[1:4] == ["-m", "tunelab", "train"]
    argv = command[4:]
    assert "--trust-remote-code" in argv and "--no-augment" in argv and "--grad-clip=none" in argv
    assert not any(a.startswith(("--num-workers", "--label-column")) for a in argv)  # defaults are not repeated
    assert resolve(TrainConfig, build_parser().parse_args(["train", *argv])) == config


@dataclass(frozen=True, kw_only=True)
class Shapes:
    """Every kind of field the flag machinery knows."""

    name: str
    """Required text."""
    items: tuple[str, ...] = ("a",)
    """Text list."""
    sizes: tuple[int, ...] = ()
    """Number list."""
    rate: float | None = 0.5
    """Optional number."""
    switch: bool | None = None
    """Optional switch."""
    on: bool = True
    """Switch on by default."""


@pytest.mark.parametrize(
    "value",
    [
        Shapes(name="x"),
        Shapes(name="x", items=(), sizes=(1, 2), rate=None, switch=True, on=False),
        Shapes(name="-x", items=("b", "c d"), rate=1e-12, switch=False),
    ],
)
def test_to_argv_round_trips_every_kind_of_field(value):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Shapes)
    assert resolve(Shapes, parser.parse_args(to_argv(value))) == value


@pytest.mark.parametrize(
    "value", [Shapes(name="x", items=("a,b",)), Shapes(name="x", items=("",)), Shapes(name="x", items=(" a",))]
)
def test_to_argv_refuses_what_no_flag_can_carry(value):
    with pytest.raises(TunelabError, match="comma-separated flag"):
        to_argv(value)


def test_to_argv_refuses_text_that_would_read_back_as_none():
    config = TrainConfig(model="m", text_column="None")
    with pytest.raises(TunelabError, match="would read back as none"):
        to_argv(config)


# ---------------------------------------------------------------- how a child's end is read


def test_the_reason_of_a_failed_child_is_its_error_line_its_signal_or_its_last_line():
    bar = "epoch 1/3:  33%|###  | 1/3\r\x1b[A\r"
    assert failure_reason(2, f"{bar}tunelab: error: K must be between 0 and 5\n") == "K must be between 0 and 5"
    assert failure_reason(1, "Traceback ...\n  File x\nRuntimeError: boom\n\n") == "exit code 1: RuntimeError: boom"
    assert failure_reason(-signal.SIGKILL, bar).startswith("killed by SIGKILL (the system may have run out of memory")
    assert failure_reason(-signal.SIGSEGV, "") == "killed by SIGSEGV"
    assert failure_reason(3, "") == "exit code 3"
    assert failure_reason(0, "anything") == ""
    assert last_line("a\nprogress 10%\rprogress 20%\r") == "progress 20%"


# ---------------------------------------------------------------- progress


def test_progress_labels_name_what_tells_a_run_apart(tmp_path):
    config = plan(tmp_path, strategies=("none", "full"), folds=2, data_fractions=(0.5, 1.0))
    runs = planned_runs(config)
    assert run_label(1, runs, config) == f"[1/{len(runs)}] none, seed 0 (fold 0, fraction 0.5)"
    simple = plan(tmp_path, strategies=("none",))
    runs = [dataclasses.replace(r, resume=True) for r in planned_runs(simple)]
    assert run_label(1, runs, simple) == "[1/1] none, seed 0 (resuming)"


def test_time_left_is_estimated_from_the_finished_runs_of_each_strategy(tmp_path):
    runs = planned_runs(plan(tmp_path, strategies=("none", "full", "scratch"), seeds=2))
    timer = Timer()
    assert "estimating" in timer.status(runs) and timer.status(runs).startswith("elapsed 00:00")
    timer.finished(runs[0], 10.0)  # none
    timer.finished(runs[1], 70.0)  # full
    # left: none 10, full 70, scratch (not seen: the mean of all, 40), twice over
    assert timer.status(runs).endswith("about 04:00 left")
    assert clock(59.4) == "00:59" and clock(3725) == "1:02:05"


# ---------------------------------------------------------------- nothing is reused or replaced silently


def finished_run(path: Path, config: TrainConfig) -> Path:
    """A run folder as a finished run leaves it, as far as compare's checks read it."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(to_yaml(config))
    save_json(path / "summary.json", {"format_version": 1, "strategy": config.strategy, "epochs": config.epochs})
    return path


def test_an_existing_report_over_other_runs_is_not_replaced_silently(tmp_path):
    out = tmp_path / "cmp"
    config = plan(out, strategies=("none", "full"))
    for run in planned_runs(config):
        finished_run(Path(run.out), run)
    (out / "results.md").write_text("the old table\n")
    smaller = plan(out, strategies=("none",))
    with pytest.raises(TunelabError, match=r"runs/fraction-1/full/s0.*another --out, or --replace-report"):
        check_report_scope(planned_runs(smaller), smaller)
    check_report_scope(planned_runs(config), config)  # the same grid, or a larger one: nothing is lost
    check_report_scope(planned_runs(plan(out, strategies=("none", "full", "scratch"))), config)
    replacing = plan(out, strategies=("none",), replace_report=True)
    check_report_scope(planned_runs(replacing), replacing)
    (out / "results.md").unlink()
    check_report_scope(planned_runs(smaller), smaller)  # no report: nothing to shrink


def test_a_run_with_other_settings_stops_the_compare_before_anything_trains(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img", per_class=4)
    out = tmp_path / "cmp"
    config = plan(out, data=str(data), strategies=("none",), epochs=3)
    (run,) = planned_runs(config)
    finished_run(Path(run.out), run)
    (out / "results.md").write_text("the old table\n")
    before = sorted(p.as_posix() for p in out.rglob("*"))
    argv = ["compare", "--model", "tiny-cnn", "--data", str(data), "--strategies", "none", "--epochs", "2"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("tunelab: error: ") and "epochs (3 -> 2)" in err[-1] and "--rerun" in err[-1]
    assert not any(line.startswith("[1/1]") for line in err)  # stopped before the first run
    assert sorted(p.as_posix() for p in out.rglob("*")) == before
    assert (out / "results.md").read_text() == "the old table\n"


# ---------------------------------------------------------------- folds and fractions


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
