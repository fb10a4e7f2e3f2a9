"""Experiment tracking (--log-with): the real trackers, offline, read back.

A run sends its resolved settings, every epoch's metrics.jsonl numbers and its summary's numbers; TensorBoard's
event files and an MLflow file store are read back with their own readers (EventAccumulator, MlflowClient) and
must hold exactly what metrics.jsonl and summary.json say. A compare's runs land in one project, one tracker
run each, named by strategy and seed. The MLflow run's status says how the run ended (FINISHED, FAILED after an
error, KILLED after a real SIGTERM), and a resumed run logs its remaining epochs into the same MLflow run.
Unknown trackers and missing packages are bad input (test_bad_inputs.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

import tunelab.runs.epoch as epoch_module
from train_fixtures import write_image_folder
from tunelab.cli import TERMINATED_EXIT, main
from tunelab.comparison.grid import planned_runs
from tunelab.errors import TunelabError
from tunelab.runs.identity import RESUME_MAY_DIFFER, REUSE_MAY_DIFFER, differing_settings
from tunelab.runs.tracking import TRACKERS, check_trackers, flat_settings, numbers, tracking_of
from tunelab.settings import CompareConfig, TrainConfig

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=8)


@pytest.fixture(autouse=True)
def _offline_mlflow(monkeypatch):
    """MLflow's file store under --tracking-dir (no server from the environment); the opt-in the run sets is undone."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def train(images: Path, out: Path, *extra: str) -> None:
    argv = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(images), "--out", str(out)]
    assert main([*argv, "--epochs", "3", "--val-fraction", "0.25", *extra]) == 0


def train_until_sigterm(images: Path, out: Path, epoch: int, *extra: str) -> None:
    """`train` with a real SIGTERM sent to this process when epoch index `epoch` starts (the CLI exits 143)."""
    real_epoch = epoch_module._train_epoch

    def epoch_then_sigterm(*args, **kwargs):
        if args[-2] == epoch:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(*args, **kwargs)

    argv = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(images), "--out", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(epoch_module, "_train_epoch", epoch_then_sigterm)
        assert main([*argv, "--epochs", "3", "--val-fraction", "0.25", *extra]) == TERMINATED_EXIT


def mlflow_runs(store: Path, project: str) -> list:
    """The MLflow runs of experiment `project` in the file store under --tracking-dir `store`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient((store / "mlflow").as_uri())
    return client.search_runs([client.get_experiment_by_name(project).experiment_id])


def steps(store: Path, run_id: str, metric: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient((store / "mlflow").as_uri()).get_metric_history(run_id, metric)]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of `folder` (not its subfolders): tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_event_files_hold_every_epoch_and_the_summary(images, tmp_path):
    run = tmp_path / "cats"
    train(images, run, "--log-with", "tensorboard")
    folder = run / "tracking" / "tensorboard" / "cats" / "none-s0"  # <tracking_dir>/tensorboard/<project>/<run>
    logged = scalars(folder)
    epochs = records(run)
    assert len(epochs) == 3
    for name in ("val_accuracy", "val_loss", "train_loss", "lr"):
        expected = [(r["epoch"], r[name]) for r in epochs]
        assert [step for step, _ in logged[name]] == [1, 2, 3]
        assert [value for _, value in logged[name]] == pytest.approx([v for _, v in expected], rel=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert logged["final/score"] == [(3, pytest.approx(summary["score"], rel=1e-6))]
    assert logged["final/train_examples"][0][1] == summary["train_examples"]
    hparams = next(folder.glob("*/hparams.yml")).read_text()  # accelerate saves the settings beside the events
    assert "strategy: none" in hparams and "lr: 0.001" in hparams  # resolved: the strategy's default lr


def test_mlflow_file_store_holds_the_settings_every_epoch_and_the_summary(images, tmp_path):
    from mlflow.tracking import MlflowClient

    run, store = tmp_path / "dogs", tmp_path / "track"
    train(images, run, "--log-with", "mlflow", "--tracking-dir", str(store))
    client = MlflowClient((store / "mlflow").as_uri())
    experiment = client.get_experiment_by_name("dogs")  # the project: the run folder's name
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "none-s0" and found.info.status == "FINISHED"
    params = found.data.params
    assert params["strategy"] == "none" and params["epochs"] == "3" and params["lr"] == "0.001"
    assert params["augment"] == "False" and params["val_data"] == "none" and params["log_with"] == "mlflow"
    history = client.get_metric_history(found.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (r["epoch"], pytest.approx(r["val_accuracy"])) for r in records(run)
    ]
    summary = json.loads((run / "summary.json").read_text())
    assert found.data.metrics["final/score"] == pytest.approx(summary["score"])
    assert found.data.metrics["final/train_seconds"] == pytest.approx(summary["train_seconds"])
    assert not (run / "tracking").exists()  # --tracking-dir elsewhere: nothing of it in the run folder
    saved = json.loads((run / "trackers.json").read_text())["mlflow"]  # the run folder names its MLflow run
    assert saved == {"run_id": found.info.run_id, "tracking_uri": (store / "mlflow").as_uri()}


def test_a_run_that_fails_ends_its_mlflow_run_failed_with_the_committed_epochs(images, tmp_path, capsys):
    import mlflow

    run, store = tmp_path / "boom", tmp_path / "track"
    argv = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(images), "--out", str(run)]
    argv += ["--epochs", "3", "--val-fraction", "0.25", "--lr", "1e30", "--log-with", "mlflow"]
    assert main([*argv, "--tracking-dir", str(store)]) == 2
    assert "validation loss became nan after epoch 2" in capsys.readouterr().err
    (found,) = mlflow_runs(store, "boom")
    assert found.info.status == "FAILED" and found.info.end_time is not None
    assert mlflow.active_run() is None  # nothing left active in this process for the next run to trip over
    assert len(records(run)) == 1  # epoch 1 committed; epoch 2 ended the run before it was saved
    assert steps(store, found.info.run_id, "val_loss") == [(1, pytest.approx(records(run)[0]["val_loss"]))]
    assert json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"] == found.info.run_id


def test_sigterm_ends_the_mlflow_run_killed_and_the_resume_continues_it(images, tmp_path):
    run, store = tmp_path / "cows", tmp_path / "track"
    train_until_sigterm(images, run, 2, "--log-with", "mlflow", "--tracking-dir", str(store))  # in epoch 3
    (killed,) = mlflow_runs(store, "cows")
    assert killed.info.status == "KILLED"
    assert [step for step, _ in steps(store, killed.info.run_id, "val_accuracy")] == [1, 2]

    train(images, run, "--resume", "--epochs", "4", "--log-with", "mlflow", "--tracking-dir", str(store))
    (resumed,) = mlflow_runs(store, "cows")  # one MLflow run for the whole training run
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    epochs = records(run)
    assert len(epochs) == 4
    for name in ("val_accuracy", "val_loss", "train_loss"):  # each epoch once, as metrics.jsonl has it
        assert steps(store, resumed.info.run_id, name) == [(r["epoch"], pytest.approx(r[name])) for r in epochs]
    summary = json.loads((run / "summary.json").read_text())
    assert resumed.data.metrics["final/score"] == pytest.approx(summary["score"])
    params, tags = resumed.data.params, resumed.data.tags
    assert params["epochs"] == "3" and params["resume"] == "False"  # MLflow keeps a parameter's first value
    assert tags["resumed.epochs"] == "4" and tags["resumed.resume"] == "True"  # what the resume changed


def test_sigterm_before_the_first_epoch_leaves_the_folder_empty_and_the_mlflow_run_killed(images, tmp_path):
    run, store = tmp_path / "ducks", tmp_path / "track"
    run.mkdir()  # a folder that was there before: the run removes only its own files, trackers.json among them
    train_until_sigterm(images, run, 0, "--log-with", "mlflow", "--tracking-dir", str(store))
    assert list(run.iterdir()) == []
    (killed,) = mlflow_runs(store, "ducks")
    assert killed.info.status == "KILLED" and steps(store, killed.info.run_id, "val_loss") == []


def test_a_resume_tracked_elsewhere_starts_a_new_mlflow_run_and_says_so(images, tmp_path, capsys):
    run, first, second = tmp_path / "hens", tmp_path / "first", tmp_path / "second"
    train_until_sigterm(images, run, 1, "--log-with", "mlflow", "--tracking-dir", str(first))
    (old,) = mlflow_runs(first, "hens")
    capsys.readouterr()
    train(images, run, "--resume", "--log-with", "mlflow", "--tracking-dir", str(second))
    err = capsys.readouterr().err
    assert f"MLflow run {old.info.run_id} of {run} is not in this experiment of" in err
    assert "the resumed epochs are tracked in a new MLflow run" in err
    (new,) = mlflow_runs(second, "hens")
    assert new.info.run_id != old.info.run_id and new.info.status == "FINISHED"
    assert [step for step, _ in steps(second, new.info.run_id, "val_loss")] == [2, 3]
    assert json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"] == new.info.run_id
    assert mlflow_runs(first, "hens")[0].info.status == "KILLED"  # the old store is left as it was


def test_a_damaged_trackers_file_stops_a_resume_with_what_to_do(images, tmp_path, capsys):
    run, store = tmp_path / "pigs", tmp_path / "track"
    train_until_sigterm(images, run, 1, "--log-with", "mlflow", "--tracking-dir", str(store))
    (run / "trackers.json").write_text('{"mlflow": 7}\n')
    capsys.readouterr()
    argv = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(images), "--out", str(run)]
    assert main([*argv, "--epochs", "3", "--val-fraction", "0.25", "--resume", "--log-with", "mlflow"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert f"tunelab: error: {run / 'trackers.json'} is damaged: it names no MLflow run id; delete it" in err[-1]
    assert (run / "checkpoint" / "latest").is_file()  # the run can still be resumed


@pytest.mark.slow
def test_a_compare_tracks_each_run_in_one_project_named_by_strategy_and_seed(images, tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "grid"
    argv = ["compare", "--model", "tiny-cnn", "--data", str(images), "--strategies", "none,retrain:1"]
    assert main([*argv, "--epochs", "2", "--out", str(out), "--log-with", "tensorboard,mlflow"]) == 0
    client = MlflowClient((out / "tracking" / "mlflow").as_uri())
    experiment = client.get_experiment_by_name("grid")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"none-s0", "retrain:1-s0"}
    for name, tracked in runs.items():
        strategy = name.removesuffix("-s0")
        assert tracked.data.params["strategy"] == strategy
        run = out / "runs" / "fraction-1" / strategy.replace(":", "-") / "s0"
        epochs = records(run)
        history = client.get_metric_history(tracked.info.run_id, "val_loss")
        assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["val_loss"])) for r in epochs]
    tensorboard = out / "tracking" / "tensorboard" / "grid"
    assert sorted(p.name for p in tensorboard.iterdir()) == ["none-s0", "retrain-1-s0"]
    assert [step for step, _ in scalars(tensorboard / "none-s0")["val_accuracy"]] == [1, 2]


def test_the_project_is_the_compare_folder_and_the_run_is_strategy_seed_fold_fraction(tmp_path):
    config = CompareConfig(
        model="tiny-cnn",
        data="d",
        out=str(tmp_path / "study"),
        strategies=("none", "lora:4"),
        seeds=2,
        data_fractions=(0.5,),
        log_with=("MLflow", "", "mlflow"),
    )
    tracked = [tracking_of(run) for run in planned_runs(config)]
    assert {t.project for t in tracked} == {"study"}
    assert {t.folder for t in tracked} == {tmp_path / "study" / "tracking"}  # every run of the compare, one place
    assert [t.run for t in tracked] == [f"{s}-s{seed}-fraction0.5" for seed in (0, 1) for s in ("none", "lora:4")]
    assert {t.trackers for t in tracked} == {("mlflow",)}  # lower case, blanks dropped, each once
    alone = tracking_of(TrainConfig(model="m", out=str(tmp_path / "runs" / "cats"), log_with=("tensorboard",)))
    assert (alone.project, alone.run, alone.folder) == ("cats", "full-s0", tmp_path / "runs" / "cats" / "tracking")
    assert tracking_of(TrainConfig(model="m")) is None


def test_without_log_with_a_compare_leaves_the_tracking_dir_unset(tmp_path):
    runs = planned_runs(CompareConfig(model="tiny-cnn", data="d", out=str(tmp_path), strategies=("none",)))
    assert {run.tracking_dir for run in runs} == {None}


def test_settings_become_flat_parameters_and_only_finite_numbers_are_logged():
    flat = flat_settings(TrainConfig(model="m", log_with=("tensorboard", "mlflow"), class_names=None))
    assert flat["log_with"] == "tensorboard,mlflow" and flat["class_names"] == "none" and flat["epochs"] == 5
    assert all(isinstance(v, str | int | float | bool) for v in flat.values())
    summary = {"score": 0.5, "flags": ["at-chance"], "augment": False, "lost": float("nan"), "test": {"f1": 0.25}}
    assert numbers(summary) == {"score": 0.5, "test/f1": 0.25}


def test_trackers_are_accelerates_and_checked_before_anything_runs(monkeypatch):
    from accelerate.utils import LoggerType

    assert set(TRACKERS) == {t.value for t in LoggerType} - {"all"}
    check_trackers(("tensorboard", "MLflow", ""))
    with pytest.raises(TunelabError, match=r"^--log-with tensorbord: no such tracker; choose from aim, clearml"):
        check_trackers(("tensorbord",))
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(TunelabError, match=r"^--log-with mlflow needs mlflow, which is not installed: pip install"):
        check_trackers(("mlflow",))


def test_tracking_settings_do_not_stop_a_resume_or_a_reuse():
    saved = TrainConfig(model="m")
    wanted = TrainConfig(model="m", log_with=("mlflow",), tracking_dir="/t", feature_store="/s")
    assert differing_settings(saved, wanted, RESUME_MAY_DIFFER) == []
    assert differing_settings(saved, wanted, REUSE_MAY_DIFFER) == []
