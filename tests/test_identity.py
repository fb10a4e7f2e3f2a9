"""A run is its settings: config.yaml holds resolved values, --resume and compare's reuse compare them.

Each flag whose unset value means "none" or "work it out" is tried as a user would: start a run with it,
interrupt it after one epoch, resume without it (refused, one line, exit 2, run folder untouched), resume
with it (ends exactly as an uninterrupted run).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import tunelab.runs.epoch as epoch_module
import tunelab.runs.job as job_module
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.errors import TunelabError
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.identity import (
    REUSE_MAY_DIFFER,
    check_reuse,
    differing_settings,
    discard_run,
    resolve_settings,
)
from tunelab.runs.loop import train
from tunelab.runs.run_lock import locked_run
from tunelab.settings import TrainConfig, from_yaml_file


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Tiny image and text data, and a separate text validation file."""
    root = tmp_path_factory.mktemp("data")
    return {
        "image": write_image_folder(root / "img", per_class=8),
        "text": write_text_tsv(root / "reviews.tsv", repeats=2),
        "val": write_text_tsv(root / "val.tsv", repeats=1),
    }


def argv(data: dict[str, Path], kind: str, out: Path, flags: list[str]) -> list[str]:
    model = "tiny-cnn" if kind == "image" else "tiny-bert"
    base = ["train", "--model", model, "--strategy", "full", "--data", str(data[kind]), "--out", str(out)]
    return [*base, "--epochs", "2", "--batch-size", "8", *flags]


def interrupted(args: list[str]) -> None:
    """Run `tunelab train` and interrupt it (as Ctrl-C would) when its second epoch starts."""
    real_epoch = epoch_module._train_epoch

    def stop(*a, **kw):
        if a[-2] == 1:
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(epoch_module, "_train_epoch", stop)
        assert main(args) == 2


def fingerprint(run: Path) -> dict[str, str]:
    """Every file in a run folder and a hash of its bytes."""
    return {
        p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


CASES = [
    # (flag's setting, data kind, the flags the run is started with, what config.yaml then shows)
    ("max_length", "text", ["--max-length", "16"], "max_length (16 -> 64)"),
    ("lr", "image", ["--lr", "0.005"], "lr (0.005 -> 0.001)"),
    ("val_data", "text", ["--val-data", "VAL"], "-> none)"),
    ("text_column", "text", ["--text-column", "sentence"], "text_column (sentence -> none)"),
    ("adversarial", "text", ["--adversarial", "fgm"], "adversarial (fgm -> none)"),
    ("augment", "image", ["--no-augment"], "augment (false -> true)"),
    ("folds", "image", ["--folds", "2"], "folds (2 -> none)"),
]


@pytest.mark.parametrize("key, kind, flags, shown", CASES, ids=[c[0] for c in CASES])
def test_resume_without_a_flag_is_refused_and_with_it_ends_like_an_uninterrupted_run(
    data, tmp_path, capsys, key, kind, flags, shown
):
    flags = [str(data["val"]) if f == "VAL" else f for f in flags]
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert main(argv(data, kind, straight, flags)) == 0
    interrupted(argv(data, kind, run, flags))
    before = fingerprint(run)
    assert (run / "checkpoint" / "latest").read_text() == "epoch-0001"
    capsys.readouterr()

    assert main([*argv(data, kind, run, []), "--resume"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"tunelab: error: cannot resume {run}: settings differ from the saved run: ")
    assert key in line and shown in line, line
    assert fingerprint(run) == before  # config.yaml, metrics and the checkpoint: byte for byte

    assert main([*argv(data, kind, run, flags), "--resume"]) == 0
    assert metrics(run) == metrics(straight)
    a, _ = load_tensors(straight / "model.safetensors")
    b, _ = load_tensors(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (run / "config.yaml").read_text() == (straight / "config.yaml").read_text().replace(str(straight), str(run))


def test_config_yaml_holds_the_resolved_settings(data, tmp_path):
    train(
        TrainConfig(
            model="tiny-bert", strategy="lora:alpha=1e1", data=str(data["text"]), out=str(tmp_path / "t"), epochs=1
        )
    )
    train(TrainConfig(model="tiny-cnn", strategy="none", data=str(data["image"]), out=str(tmp_path / "i"), epochs=1))
    train(TrainConfig(model="tiny-cnn", strategy="full", data=str(data["image"]), out=str(tmp_path / "f"), epochs=1))
    text = from_yaml_file(TrainConfig, tmp_path / "t" / "config.yaml")
    assert (text.task, text.max_length, text.augment, text.lr) == ("text-classification", 64, False, 1e-3)
    assert text.strategy == "lora:alpha=10.0"  # the canonical spec, as summary.json names it
    cached = from_yaml_file(TrainConfig, tmp_path / "i" / "config.yaml")
    assert (cached.task, cached.max_length, cached.augment) == ("image-classification", None, False)
    full = from_yaml_file(TrainConfig, tmp_path / "f" / "config.yaml")
    assert full.augment is True  # nothing cached: images are augmented
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert summary["augment"] is True and summary["cached_blocks"] == 0


def test_a_run_saved_with_unresolved_values_still_resumes_when_the_command_matches(data, tmp_path, capsys):
    """Runs written before config.yaml held resolved values have max_length/augment null."""
    run = tmp_path / "run"
    interrupted(argv(data, "text", run, []))
    config = run / "config.yaml"
    old = (
        config.read_text()
        .replace("max_length: 64\n", "max_length: null\n")
        .replace("augment: false\n", "augment: null\n")
    )
    assert old != config.read_text()
    config.write_text(old)

    assert main([*argv(data, "text", run, ["--max-length", "32"]), "--resume"]) == 2
    assert "max_length (64 -> 32)" in error_line(capsys)  # a saved null is what the model's default gives
    assert config.read_text() == old
    assert main([*argv(data, "text", run, []), "--resume"]) == 0
    resolved = from_yaml_file(TrainConfig, config)
    assert (resolved.max_length, resolved.augment) == (64, False)


def test_settings_known_without_a_model_are_refused_before_anything_loads(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    interrupted(argv(data, "image", run, ["--folds", "2"]))

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(job_module, "prepare", no_loading)
    assert main([*argv(data, "image", run, ["--lr", "0.01"]), "--resume"]) == 2
    assert "folds (2 -> none), lr (0.001 -> 0.01)" in error_line(capsys)


# ---------------------------------------------------------------- compare's reuse


def planned(data, root: Path, **kw) -> list[TrainConfig]:
    """Two runs as a compare would plan them (lr and augment unset)."""
    defaults = dict(model="tiny-cnn", data=str(data["image"]), epochs=1, batch_size=8)
    return [
        TrainConfig(**{**defaults, **kw}, strategy=spec, out=str(root / spec.replace(":", "-")))
        for spec in ("none", "retrain:1")
    ]


@pytest.fixture
def finished(data, tmp_path) -> list[TrainConfig]:
    runs = planned(data, tmp_path)
    for run in runs:
        train(run)
    return runs


def test_matching_runs_are_reused(data, finished, tmp_path):
    assert check_reuse(planned(data, tmp_path), rerun=False) == []
    assert check_reuse(planned(data, tmp_path, num_workers=1, cache_memory_mb=0), rerun=False) == []


@pytest.mark.parametrize(
    "change, shown",
    [
        (dict(epochs=2), "epochs (1 -> 2)"),
        (dict(augment=True), "augment (false -> true)"),
        (dict(lr=0.01), "lr (0.001 -> 0.01)"),
    ],
)
def test_runs_with_other_settings_are_refused_or_retrained(data, finished, tmp_path, change, shown):
    before = {run.out: fingerprint(Path(run.out)) for run in finished}
    wanted = planned(data, tmp_path, **change)
    with pytest.raises(TunelabError) as info:
        check_reuse(wanted, rerun=False)
    message = str(info.value)
    assert message.startswith(f"{wanted[0].out} holds a run with other settings") and shown in message
    assert "--rerun" in message and "--out" in message and "\n" not in message
    assert "(and 1 more run(s))" in message  # both cache their frozen prefix: unset augment resolved to off
    assert {run.out: fingerprint(Path(run.out)) for run in finished} == before

    retrain = check_reuse(wanted, rerun=True)
    assert retrain and all(Path(run.out).is_dir() for run in retrain)  # deleted only when retrained
    fresh = discard_run(retrain[0])
    assert not Path(fresh.out).exists() and fresh.resume is False
    train(fresh)
    assert check_reuse([fresh], rerun=False) == []


def test_a_run_is_discarded_only_when_it_holds_nothing_else_and_nobody_trains_it(finished):
    first, second = finished
    (Path(first.out) / "notes.txt").write_text("mine")
    with pytest.raises(TunelabError, match="already holds other files"):
        discard_run(first)
    assert (Path(first.out) / "summary.json").is_file()
    with locked_run(Path(second.out)), pytest.raises(TunelabError, match="in use by another tunelab process"):
        discard_run(second)
    assert (Path(second.out) / "summary.json").is_file()


def test_only_a_tunelab_run_is_considered_for_reuse(data, tmp_path):
    runs = planned(data, tmp_path)
    Path(runs[0].out).mkdir()
    (Path(runs[0].out) / "config.yaml").write_text("epochs: 7\n")  # no summary.json, no checkpoint: not a run
    assert check_reuse(runs, rerun=False) == []


def test_a_run_saved_with_unresolved_values_is_reused(data, finished, tmp_path):
    for run in finished:
        config = Path(run.out) / "config.yaml"
        config.write_text(config.read_text().replace("augment: false\n", "augment: null\n"))
    assert check_reuse(planned(data, tmp_path), rerun=False) == []


def test_resolution_fills_what_the_run_works_out_and_keeps_what_was_given(data):
    text = TrainConfig(model="tiny-bert", strategy="lora:alpha=1e-1", data=str(data["text"]))
    resolved = resolve_settings(text)
    assert (resolved.strategy, resolved.task, resolved.lr, resolved.max_length) == (
        "lora:alpha=0.1",
        "text-classification",
        1e-3,
        64,
    )
    same = resolve_settings(TrainConfig(model="tiny-bert", strategy="lora:alpha=0.1", data=str(data["text"]), lr=1e-3))
    assert differing_settings(resolved, same, REUSE_MAY_DIFFER) == []
    given = resolve_settings(TrainConfig(model="tiny-bert", data=str(data["text"]), max_length=8, augment=True))
    assert (given.max_length, given.augment) == (8, True)


# ---------------------------------------------------------------- a task's own default lr


@pytest.mark.parametrize(
    "strategy, task, given, expected",
    [
        ("adapter", "token-classification", None, 1e-2),  # only new weights train: the task's default
        ("none", "token-classification", None, 1e-2),
        ("lora", "token-classification", None, 1e-3),  # new weights, but edits of pretrained ones (W + B A)
        ("full", "token-classification", None, 1e-3),  # pretrained weights train: the strategy's
        ("adapter", "token-classification", 3e-4, 3e-4),  # a given --lr is kept
        ("adapter", "text-classification", None, 1e-3),  # the task has no default of its own
    ],
)
def test_tagging_defaults_a_higher_lr_for_strategies_that_add_only_new_weights(strategy, task, given, expected):
    from tunelab.runs.identity import resolved
    from tunelab.runs.prepare import prepare

    plan = prepare("tiny-bert", strategy, 3)
    config = TrainConfig(model="tiny-bert", strategy=strategy, task=task, lr=given)
    assert resolved(config, plan, task).lr == pytest.approx(expected)


def test_a_tagging_run_resumes_with_the_lr_its_task_chose(tmp_path):
    data = tmp_path / "ner.txt"
    sentences = ["John B-PER\nSmith I-PER\nflew O\nto O\nParis B-LOC", "Mary B-PER\nwent O\nhome O"] * 8
    data.write_text("\n\n".join(sentences) + "\n")
    argv = ["train", "--model", "tiny-bert", "--strategy", "adapter", "--data", str(data), "--epochs", "2"]
    argv += ["--out", str(tmp_path / "run"), "--batch-size", "4"]
    assert main(argv) == 0
    saved = from_yaml_file(TrainConfig, tmp_path / "run" / "config.yaml")
    assert saved.lr == pytest.approx(1e-2) and saved.task == "token-classification"
    # the same command with --resume: no lr given, so the check without a model leaves lr to the one with it
    from dataclasses import replace

    from tunelab.runs.identity import check_resume, resolved
    from tunelab.runs.prepare import prepare
    from tunelab.runs.rundir import RunDir

    wanted = replace(saved, lr=None, task="auto", resume=True)
    check_resume(RunDir(tmp_path / "run"), wanted)
    plan = prepare("tiny-bert", "adapter", len(["O", "B-PER", "I-PER", "B-LOC"]))
    check_resume(RunDir(tmp_path / "run"), resolved(wanted, plan, "token-classification"), plan)
    with pytest.raises(TunelabError, match=r"lr \(0\.01 -> 0\.001\)"):  # a different lr given is still refused
        check_resume(RunDir(tmp_path / "run"), replace(wanted, lr=1e-3))
