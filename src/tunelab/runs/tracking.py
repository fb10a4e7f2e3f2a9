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

A resumed run starts a new tracker run for the epochs it still trains (TensorBoard writes into the same
folder, so the curves join). Which trackers exist and whether their package is installed is checked before
anything is written (`check_trackers`, called at the start of train and compare): accelerate itself would
skip a tracker whose package is missing without a word.

May import: errors, settings (accelerate, and the tracker packages, only when a run tracks).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.settings import TrainConfig

if TYPE_CHECKING:
    from accelerate import Accelerator

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


def start_tracking(accelerator: Accelerator, config: TrainConfig) -> None:
    """Start the trackers with the run's resolved settings (`config`, as config.yaml holds them) as parameters."""
    tracking = tracking_of(config)
    if tracking is None:
        return
    if accelerator.is_main_process and "mlflow" in tracking.trackers:
        _mlflow_experiment(tracking)
    init_kwargs = {"wandb": {"name": tracking.run, "dir": str(tracking.folder)}}
    accelerator.init_trackers(tracking.project, config=flat_settings(config), init_kwargs=init_kwargs)


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


def _mlflow_experiment(tracking: Tracking) -> None:
    """Point MLflow at the file store under the tracking folder (unless MLFLOW_TRACKING_URI says otherwise) and make
    sure the project's experiment exists: runs of a compare that start at once may both find it missing, and
    accelerate's tracker would then fail in the one that creates it second."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
        store = tracking.folder.absolute() / "mlflow"
        store.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(store.as_uri())
    if mlflow.get_experiment_by_name(tracking.project) is not None:
        return
    try:
        mlflow.create_experiment(tracking.project)
    except MlflowException:
        if mlflow.get_experiment_by_name(tracking.project) is None:  # not a lost race: a real failure
            raise
