"""Experiment tracking: a run's settings, its epochs and its summary, sent to the trackers users already use.

The trackers are accelerate's (`--log-with tensorboard,mlflow`, also wandb, comet_ml, aim, clearml, dvclive,
swanlab, trackio): the Accelerator is built with them (`accelerator_kwargs`), the run starts them once its
settings are resolved (`start_tracking`: the resolved settings as one flat dict of parameters), every epoch
logs the numbers of its metrics.jsonl line at step = the epoch (`log_epoch`), and the end logs the numbers of
summary.json under `final/` (`log_summary`). accelerate sends all of it from the main process only.

Names, so that the runs of a compare land side by side in one place:
- the project is the compare's --out folder name for a run of a compare (the run folder sits at
  <compare>/runs/fraction-F/<strategy>/s<seed>, the layout `comparison.grid.planned_runs` makes), else the
  run folder's own name; the run is named `<strategy>-s<seed>` (plus `-fold<f>`, `-fraction<x>` when set);
- file-based trackers write under --tracking-dir (default <out>/tracking; compare points every run at
  <compare out>/tracking): TensorBoard event files in tensorboard/<project>/<run>/, and MLflow, unless
  MLFLOW_TRACKING_URI names a server or database, a file store in mlflow/ with one experiment per project.
  MLflow 3 keeps that file backend in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE is set;
  tunelab sets it (when unset) because the file store needs no server and takes concurrent runs.

How a tracker run ends says how the training run ended: MLflow's ends FINISHED when the run completes
(accelerate's end_training), FAILED when an exception stops it and KILLED after Ctrl-C or SIGTERM
(`ended_on_failure` around the run, `end_tracking`). Left alone, a failed run's MLflow run would stay RUNNING
for as long as the process lives, block the next run's start_run in the same process (a compare's in-process
executor), and be marked FINISHED by MLflow's exit hook.

A resumed run continues its tracker run: the MLflow run id is kept in the run folder (trackers.json) when
tracking starts, and --resume logs the remaining epochs into that same run; its parameters keep their first
values, and a setting the resume changed (--epochs, --resume) is a tag `resumed.<name>`. When the store no
longer holds that run (another --tracking-dir or MLFLOW_TRACKING_URI), a new MLflow run is started and a line
says so. TensorBoard writes into the same folder, so the curves join. Epochs are logged once committed
(after the checkpoint is saved), so an epoch interrupted while saving is logged once, by the resumed run.
Which trackers exist and whether their package is installed is checked before anything is written
(`check_trackers`, called at the start of train and compare): accelerate itself would skip a tracker whose
package is missing without a word.

May import: errors, fileio, settings, runs.rundir (accelerate, and the tracker packages, only when a run tracks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.fileio import load_json, save_json
from tunelab.runs.rundir import RunDir
from tunelab.settings import TrainConfig

if TYPE_CHECKING:
    from accelerate import Accelerator
    from accelerate.tracking import GeneralTracker, MLflowTracker

TRACKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "aim": (("aim",), "aim"),
    "clearml": (("clearml",), "clearml"),
    "comet_ml": (("comet_ml",), "comet_ml"),
    "dvclive": (("dvclive",), "dvclive"),
    "mlflow": (("mlflow",), "'tunelab[track]' (or mlflow)"),
    "swanlab": (("swanlab",), "swanlab"),
    "tensorboard": (("tensorboard", "tensorboardX"), "'tunelab[track]' (or tensorboard)"),
    "trackio": (("trackio",), "trackio"),
    "wandb": (("wandb",), "wandb"),
}
"""accelerate's trackers: the modules any one of which makes it work, and what to pip install for it."""


@dataclass(frozen=True)
class Tracking:
    """Where and under which names one run is tracked."""

    trackers: tuple[str, ...]
    """The trackers, as --log-with names them (lower case, each once)."""
    folder: Path
    """--tracking-dir: where the file-based trackers write."""
    project: str
    """The compare's folder name for a run of a compare, else the run folder's name."""
    run: str
    """'<strategy>-s<seed>', plus the fold and the fraction when they are set."""


def tracker_names(log_with: tuple[str, ...]) -> tuple[str, ...]:
    """--log-with as tracker names: lower case, blanks dropped, each once."""
    names = [name.strip().lower() for name in log_with]
    return tuple(dict.fromkeys(name for name in names if name))


def check_trackers(log_with: tuple[str, ...]) -> None:
    """Refuse a tracker accelerate does not know, or one whose package is not installed (before any file is written)."""
    for name in tracker_names(log_with):
        if name not in TRACKERS:
            raise TunelabError(f"--log-with {name}: no such tracker; choose from {', '.join(TRACKERS)}")
        modules, package = TRACKERS[name]
        if not any(_installed(module) for module in modules):
            raise TunelabError(f"--log-with {name} needs {modules[0]}, which is not installed: pip install {package}")


def tracking_of(config: TrainConfig) -> Tracking | None:
    """How `config`'s run is tracked; None when --log-with names no tracker."""
    trackers = tracker_names(config.log_with)
    if not trackers:
        return None
    out = Path(config.out).absolute()
    folder = Path(config.tracking_dir) if config.tracking_dir is not None else out / "tracking"
    run = f"{config.strategy}-s{config.seed}"
    run += f"-fold{config.fold}" if config.folds else ""
    run += f"-fraction{config.train_fraction:g}" if config.train_fraction != 1 else ""
    return Tracking(trackers, folder, (_compare_folder(out) or out).name, run)


def accelerator_kwargs(config: TrainConfig) -> dict:
    """What the Accelerator is built with for tracking: its trackers and the folder file-based ones write to.

    TensorBoard and MLflow are built here, to give each run its own folder and name inside the project
    (accelerate would name both after the project alone); the other trackers are left to accelerate by name.
    """
    tracking = tracking_of(config)
    if tracking is None:
        return {}
    from accelerate.tracking import MLflowTracker, TensorBoardTracker
    from accelerate.utils import ProjectConfiguration

    built = {
        "tensorboard": lambda: TensorBoardTracker(
            f"{_folder_name(tracking.project)}/{_folder_name(tracking.run)}", tracking.folder / "tensorboard"
        ),
        "mlflow": lambda: MLflowTracker(tracking.project, run_name=tracking.run),
    }
    trackers = [built[name]() if name in built else name for name in tracking.trackers]
    folder = str(tracking.folder)
    return {"log_with": trackers, "project_config": ProjectConfiguration(project_dir=folder, logging_dir=folder)}


def start_tracking(accelerator: Accelerator, config: TrainConfig, resumed: bool = False) -> None:
    """Start the trackers with the run's resolved settings (`config`, as config.yaml holds them) as parameters.

    `resumed` (the run continues from a checkpoint): MLflow continues the run trackers.json names. Either way
    the MLflow run's id is then written there.
    """
    tracking = tracking_of(config)
    if tracking is None:
        return
    run, main = RunDir(Path(config.out)), accelerator.is_main_process
    mlflow_tracker = _mlflow_tracker(accelerator)
    if main and mlflow_tracker is not None:
        experiment = _mlflow_experiment(tracking, mlflow_tracker.experiment_name)
        if resumed and mlflow_tracker.run_id is None:  # MLFLOW_RUN_ID, when set, names the run itself
            mlflow_tracker.run_id = _resumable_run(run, experiment)
    init_kwargs = {"wandb": {"name": tracking.run, "dir": str(tracking.folder)}}
    accelerator.init_trackers(tracking.project, init_kwargs=init_kwargs)
    settings = flat_settings(config)
    for tracker in accelerator.trackers:
        if tracker.name != "mlflow":
            tracker.store_init_configuration(settings)
        elif main:
            _log_mlflow_params(tracker, settings)
    if main and mlflow_tracker is not None:
        import mlflow

        info = mlflow_tracker.active_run.info
        uri = mlflow.get_tracking_uri()
        save_json(run.inside(run.trackers), {"mlflow": {"run_id": info.run_id, "tracking_uri": uri}})


def end_tracking(accelerator: Accelerator, status: str) -> None:
    """End the run's tracker runs: MLflow's with `status` (FINISHED, FAILED or KILLED), the others as accelerate
    ends them. Ended trackers are dropped from the Accelerator, so that its end_training does not end them again."""
    for tracker in accelerator.trackers:
        if tracker.name != "mlflow":
            tracker.finish()
        elif accelerator.is_main_process:
            import mlflow

            mlflow.end_run(status)
    accelerator.trackers.clear()


@contextlib.contextmanager
def ended_on_failure(accelerator: Accelerator) -> Iterator[None]:
    """Inside the block, an exception ends the tracker runs FAILED and Ctrl-C or SIGTERM (a KeyboardInterrupt,
    see cli.Terminated) ends them KILLED; the exception then goes on. A run that completes ends them itself."""
    try:
        yield
    except BaseException as error:
        # the error that stopped the run is the one to report, not one from a tracker while it ends
        with contextlib.suppress(Exception):
            end_tracking(accelerator, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        raise


def log_epoch(accelerator: Accelerator, record: dict) -> None:
    """An epoch's metrics.jsonl line, its numbers only, at step = the epoch (from 1)."""
    accelerator.log(numbers(record), step=record["epoch"])


def log_summary(accelerator: Accelerator, summary: dict) -> None:
    """summary.json's numbers as final/<key> (a nested dict's as final/<key>/<name>), at the last epoch's step."""
    values = {f"final/{key}": value for key, value in numbers(summary).items()}
    accelerator.log(values, step=summary.get("epochs") or 0)


def flat_settings(config: TrainConfig) -> dict[str, str | int | float | bool]:
    """The settings as trackers take parameters: lists comma-joined, unset as 'none'."""
    flat = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        flat[field.name] = "none" if value is None else value
    return flat


def numbers(values: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers in `values` (booleans and text left out; a nested dict's as <key>/<name>)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= numbers(value, f"{prefix}{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = value
    return out


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def _compare_folder(out: Path) -> Path | None:
    """The compare folder holding run folder `out`, when it sits where a compare puts its runs."""
    parents = out.parents
    if len(parents) >= 4 and parents[1].name.startswith("fraction-") and parents[2].name == "runs":
        return parents[3]
    return None


def _folder_name(name: str) -> str:
    """A name as one folder name on any system ('retrain:4-s0' -> 'retrain-4-s0')."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", name).strip("-.") or "run"


def _mlflow_tracker(accelerator: Accelerator) -> MLflowTracker | None:
    """The MLflow tracker `accelerator_kwargs` built, before it starts; None when the run does not use MLflow."""
    return next((t for t in accelerator.log_with if getattr(t, "name", None) == "mlflow"), None)


def _mlflow_experiment(tracking: Tracking, name: str) -> str:
    """Point MLflow at the file store under the tracking folder (unless MLFLOW_TRACKING_URI says otherwise) and make
    sure experiment `name` (the project, unless MLFLOW_EXPERIMENT_NAME says otherwise) exists: runs of a compare
    that start at once may both find it missing, and accelerate's tracker would then fail in the one that creates
    it second. Returns the experiment's id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
        store = tracking.folder.absolute() / "mlflow"
        store.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(store.as_uri())
        # which also exports MLFLOW_TRACKING_URI (for subprocesses): the next run in this process would take that
        # for the user's choice and log into this run's store instead of its own --tracking-dir
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(name)
    except MlflowException:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:  # not a lost race: a real failure
            raise
        return experiment.experiment_id


def _resumable_run(run: RunDir, experiment: str) -> str | None:
    """The MLflow run that trackers.json names, when the store holds it, live, in `experiment`; else None (and a
    line saying that a new MLflow run takes the resumed epochs)."""
    if not run.trackers.is_file():
        return None
    saved = load_json(run.trackers)
    entry = saved.get("mlflow") if isinstance(saved, dict) else None
    run_id = entry.get("run_id") if isinstance(entry, dict) else None
    if not isinstance(run_id, str):
        raise TunelabError(
            f"{run.trackers} is damaged: it names no MLflow run id; delete it to track the rest of the run in a new "
            "MLflow run"
        )
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.get_run(run_id)
    except MlflowException:  # not in this store (or not an id at all)
        found = None
    if found is None or found.info.experiment_id != experiment or found.info.lifecycle_stage != "active":
        print(
            f"MLflow run {run_id} of {run.path} is not in this experiment of {mlflow.get_tracking_uri()}; "
            "the resumed epochs are tracked in a new MLflow run",
            file=sys.stderr,
        )
        return None
    return run_id


def _log_mlflow_params(tracker: GeneralTracker, settings: dict) -> None:
    """The settings as the MLflow run's parameters. A resumed run's parameters keep their first values (MLflow
    refuses to change one); a setting the resume changed is the tag resumed.<name>."""
    import mlflow

    logged = mlflow.get_run(tracker.active_run.info.run_id).data.params
    tracker.store_init_configuration({k: v for k, v in settings.items() if k not in logged})  # accelerate's batching
    changed = {f"resumed.{k}": str(v) for k, v in settings.items() if k in logged and logged[k] != str(v)}
    if changed:
        mlflow.set_tags(changed)
