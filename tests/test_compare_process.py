"""`tunelab compare` end to end: every run in its own `tunelab train` process, on tiny-cnn and tiny data.

Each child imports torch (a few seconds on a loaded 2-core machine), so only one test here is fast enough to
run always; the others start several children and are marked slow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from train_fixtures import write_image_folder
from tunelab.cli import main
from tunelab.comparison.grid import CompareConfig, augmentation_line, compare, planned_runs
from tunelab.errors import TunelabError
from tunelab.settings import TrainConfig, from_yaml_file

PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (\S+), seed (\d+)(?: \((.*)\))?: elapsed (\d\d:\d\d), (.*)$")


def compare_argv(data: Path, out: Path, strategies: str, *extra: str) -> list[str]:
    return [
        "compare",
        "--model",
        "tiny-cnn",
        "--data",
        str(data),
        "--strategies",
        strategies,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        str(out),
        *extra,
    ]


def saved_config(out: Path, folder: str, seed: int = 0) -> TrainConfig:
    return from_yaml_file(TrainConfig, out / "runs" / "fraction-1" / folder / f"s{seed}" / "config.yaml")


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "img", per_class=6)


def test_compare_trains_each_run_in_a_child_with_every_setting_and_prints_the_table(small_images, tmp_path, capsys):
    out = tmp_path / "cmp"
    settings = ["--weight-decay", "0.03", "--warmup", "0.2", "--grad-clip", "0.5", "--patience", "2"]
    argv = compare_argv(small_images, out, "none,full", *settings, "--cache-memory-mb", "64")
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()

    # every setting reached the child, and one augmentation policy, recorded in each run's config.yaml
    configs = [saved_config(out, "none"), saved_config(out, "full")]
    for config in configs:
        assert (config.weight_decay, config.warmup, config.grad_clip, config.patience) == (0.03, 0.2, 0.5, 2)
        assert config.cache_memory_mb == 64 and config.epochs == 1 and config.batch_size == 8
    assert {c.augment for c in configs} == {False}
    assert err[0] == augmentation_line(CompareConfig(model="tiny-cnn"))
    assert err[0].startswith("augmentation: off for every strategy (--augment turns it on for all;")

    # the child's own output came through, each run announced with the time so far and the time left
    assert sum("run saved in" in line for line in err) == 2
    progress = [m.groups() for line in err if (m := PROGRESS.match(line))]
    assert [(p[0], p[1], p[2]) for p in progress] == [("1", "2", "none"), ("2", "2", "full")]
    assert progress[0][6] == "estimating the time left" and re.fullmatch(r"about \d\d:\d\d left", progress[1][6])

    # each run measured itself
    for folder in ("none", "full"):
        summary = json.loads((out / "runs" / "fraction-1" / folder / "s0" / "summary.json").read_text())
        assert summary["peak_memory_mb"] > 0 and summary["train_seconds"] > 0 and summary["augment"] is False

    # the table on stdout is results.md; the report's path is the last line on stderr
    assert captured.out == (out / "results.md").read_text()
    assert "none" in captured.out and "full" in captured.out
    assert err[-1] == f"report: {out / 'report.html'}"


@pytest.mark.slow
def test_a_crashing_run_is_reported_as_failed_and_the_others_finish(small_images, tmp_path, capsys):
    out = tmp_path / "cmp"
    report = compare(
        CompareConfig(
            model="tiny-cnn",
            data=str(small_images),
            out=str(out),
            strategies=("none", "retrain:99", "scratch"),
            epochs=1,
            batch_size=8,
        )
    )
    err = capsys.readouterr().err
    assert re.search(r"\[2/3\] retrain:99, seed 0: failed: .*K must be between 0 and \d+.*going on with the other", err)
    for folder in ("none", "scratch"):
        assert (out / "runs" / "fraction-1" / folder / "s0" / "summary.json").is_file()
    assert not (out / "runs" / "fraction-1" / "retrain-99").exists()  # a run that failed at the start leaves nothing
    table = (out / "results.md").read_text()
    assert "retrain:99" in table and "K must be between" in table  # listed as failed, with the reason
    assert report == out / "report.html" and report.is_file()


@pytest.mark.slow
def test_when_every_run_fails_compare_ends_with_the_first_reason(small_images, tmp_path):
    config = CompareConfig(
        model="tiny-cnn", data=str(small_images), out=str(tmp_path / "cmp"), strategies=("retrain:99",), seeds=2
    )
    with pytest.raises(TunelabError, match=r"every run failed; the first, retrain:99 seed 0: .*K must be between"):
        compare(config)
    assert not (tmp_path / "cmp" / "report.html").exists()


@pytest.mark.slow
def test_augment_is_on_for_every_strategy_or_for_none(small_images, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(compare_argv(small_images, out, "none,retrain:2,full", "--augment")) == 0
    assert capsys.readouterr().err.startswith("augmentation: on for every strategy")
    summaries = [
        json.loads((out / "runs" / "fraction-1" / folder / "s0" / "summary.json").read_text())
        for folder in ("none", "retrain-2", "full")
    ]
    assert {s["augment"] for s in summaries} == {True}
    assert {s["cached_blocks"] for s in summaries} == {0}  # augmented images: no strategy caches features
    assert {saved_config(out, f).augment for f in ("none", "retrain-2", "full")} == {True}


@pytest.mark.slow
def test_reuse_needs_the_same_settings_and_rerun_retrains_only_what_differs(small_images, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(compare_argv(small_images, out, "none,full")) == 0
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")}
    report = (out / "results.md").read_text()
    capsys.readouterr()

    # the same command again: both runs reused, nothing trains
    assert main(compare_argv(small_images, out, "none,full")) == 0
    err = capsys.readouterr().err
    assert "[1/2] none, seed 0: done before, skipped" in err and "[2/2] full, seed 0: done before, skipped" in err

    # other settings: refused, the runs and the report untouched; --rerun retrains the runs that differ
    changed = compare_argv(small_images, out, "none,full", "--weight-decay", "0.05")
    assert main(changed) == 2
    assert "weight_decay (0.01 -> 0.05)" in capsys.readouterr().err.splitlines()[-1]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")} == before
    assert (out / "results.md").read_text() == report
    assert main([*changed, "--rerun"]) == 0
    assert {saved_config(out, f).weight_decay for f in ("none", "full")} == {0.05}

    # a smaller grid would shrink the report: refused, unless asked for
    smaller = compare_argv(small_images, out, "none", "--weight-decay", "0.05")
    assert main(smaller) == 2
    assert "--replace-report" in capsys.readouterr().err.splitlines()[-1]
    assert main([*smaller, "--replace-report"]) == 0
    assert "full" not in (out / "results.csv").read_text()
    assert (out / "runs" / "fraction-1" / "full" / "s0" / "summary.json").is_file()  # the run folder stays


@pytest.mark.slow
def test_a_run_in_a_compare_measures_only_its_own_peak_memory(tmp_path):
    """`none` after `full` in one compare peaks within 10% of the same `none` run on its own. MobileNetV2 at
    224 px, so that `full` peaks far above `none` (about 2.1 GB against 1.1 GB here): in one long-lived
    process, `none` after `full` reported most of `full`'s peak (issue 15: 3189 MB against 1460 MB)."""
    data = write_image_folder(tmp_path / "img", per_class=16)
    common = {"model": "mobilenet_v2", "data": str(data), "epochs": 1, "batch_size": 16}

    def peaks(out: Path, strategies: tuple[str, ...]) -> dict[str, float]:
        config = CompareConfig(**common, out=str(out), strategies=strategies)
        compare(config)
        runs = planned_runs(config)
        return {r.strategy: json.loads((Path(r.out) / "summary.json").read_text())["peak_memory_mb"] for r in runs}

    both = peaks(tmp_path / "both", ("full", "none"))
    alone = peaks(tmp_path / "alone", ("none",))["none"]
    assert both["full"] > 1.3 * both["none"], both  # the test can tell a shared peak from an own one
    assert abs(both["none"] - alone) <= 0.10 * alone, (both, alone)


def test_the_python_api_returns_the_numbers_the_report_shows(small_images, tmp_path):
    import tunelab

    out = tmp_path / "api"
    config = tunelab.CompareConfig(
        model="tiny-cnn", data=str(small_images), out=str(out), strategies=("none", "full"), epochs=1, batch_size=8
    )
    result = tunelab.compare(config)
    assert result.report == out / "report.html" and result.report.is_file()
    assert {r.strategy for r in result.results} == {"none", "full"} and result.best().best
    table = (out / "results.md").read_text()
    for r in result.results:  # every number the script reads is the table's
        assert f"| {r.strategy}" in table and f"{r.score_mean:.3f}" in table
    assert result.at("none").n_runs == 1
    with pytest.raises(KeyError, match="strategies: full, none"):
        result.at("lora")
