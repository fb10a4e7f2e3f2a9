"""Reading finished runs for a comparison: one RunRecord per run directory, from its files alone.

A run is read from config.yaml, metrics.jsonl and summary.json, so a report can be redone after the fact,
from any subset of runs, without retraining or loading a model. summary.json keys added after format 1
(test scores, chance level, sanity flags, training conditions) are read with the defaults an older run
implies: scored on validation, nothing flagged, conditions not recorded.

May import: runs (the run directory), settings, fileio, errors.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.runs.run_files import read_summary
from tunelab.runs.rundir import RunDir
from tunelab.settings import TrainConfig, from_yaml_file


@dataclass(frozen=True)
class RunFlag:
    """A sanity flag one run raised, e.g. that it predicted one class for the whole evaluation set."""

    flag: str
    """Short name: 'one-class', 'at-chance', 'non-finite-loss', ..."""
    message: str
    """The run's own sentence about it."""
    seed: int
    """Seed of the run that raised it."""
    fold: int | None
    """Fold of the run that raised it; None without folds."""


@dataclass(frozen=True)
class RunRecord:
    """One finished run, reduced to what a comparison needs."""

    path: Path
    """The run directory."""
    model: str
    """Model name as given to the run."""
    data: str
    """Training data path as given to the run."""
    strategy: str
    """Strategy spec, as the run wrote it in summary.json (canonical, e.g. 'retrain:3')."""
    seed: int
    """Random seed of the run."""
    fold: int | None
    """Validation fold under K-fold cross-validation; None without folds."""
    train_fraction: float
    """Fraction of the training split the run trained on."""
    train_examples: int
    """Training examples actually used."""
    val_examples: int
    """Validation examples: where the best epoch was selected."""
    metric: str
    """Name of the metric ('accuracy'); the curve holds val_<metric> per epoch."""
    score: float
    """The reported score: the test score with a test set, else the best validation score."""
    trainable_params: int
    """Parameters the strategy trained."""
    total_params: int
    """All parameters of the model."""
    train_seconds: float
    """Wall-clock time of the whole run, caching and evaluation included."""
    seconds_per_epoch: float
    """Mean wall-clock seconds per epoch, from metrics.jsonl."""
    peak_memory_mb: float
    """Peak GPU memory (or CPU resident memory) of the run."""
    checkpoint_bytes: int
    """Size of model.safetensors: what the strategy needs to store per task."""
    curve: tuple[float, ...]
    """Validation metric after each epoch."""
    val_score: float
    """Best validation score: what the best epoch was selected on (the same as `score` without a test set)."""
    eval_examples: int
    """Examples in the set `score` was measured on."""
    scored_on: str = "validation"
    """'test' when `score` was measured on a held-out test set, 'validation' when on the selection set."""
    test_examples: int = 0
    """Test examples; 0 without a test set."""
    chance_score: float | None = None
    """Score of always predicting the most frequent class, same metric and set; None when not recorded."""
    flags: tuple[RunFlag, ...] = ()
    """Sanity flags the run raised."""
    augment: bool | None = None
    """Whether training augmented its inputs; None when the run did not record it."""
    cached_blocks: int | None = None
    """Frozen leading blocks whose outputs were cached (0: none); None when not recorded."""


@dataclass(frozen=True)
class FailedRun:
    """A run of a comparison that did not finish: listed in the report, counted in no mean."""

    path: Path
    """The run directory (may hold only part of a run)."""
    strategy: str
    """Strategy spec."""
    seed: int
    """Random seed of the run."""
    fold: int | None
    """Validation fold; None without folds."""
    train_fraction: float
    """Fraction of the training split."""
    reason: str
    """Why it failed, in one line (the error's message or the exit status)."""


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run directories (holding config.yaml) among `paths` or anywhere below them, each once, in order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if RunDir(path).config.is_file():
            found.append(path)
            continue
        if not path.exists():
            raise TunelabError(f"{path}: no such run directory")
        below = sorted(config.parent for config in path.rglob("config.yaml")) if path.is_dir() else []
        if not below:
            raise TunelabError(
                f"{path} is not a run directory (no config.yaml) and holds none; "
                "give run directories or the folder above them"
            )
        found.extend(below)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)  # a run given directly and through its parent counts once
    return list(unique.values())


def collect(run_dirs: Sequence[Path], skip: Iterable[Path] = ()) -> list[RunRecord]:
    """Read every finished run in `run_dirs` (run directories or folders above them) as a RunRecord.

    Incomplete runs are an error rather than silently left out: a report missing a seed would look like
    an honest mean. `skip` names run directories known to have failed: they are reported as such by the
    caller, so they are not read here. Runs of different models or data are refused: their scores do not compare.
    """
    skipped = {Path(p).resolve() for p in skip}
    dirs = [d for d in find_run_dirs(run_dirs) if d.resolve() not in skipped]
    incomplete = [d for d in dirs if not RunDir(d).complete]
    if incomplete:
        shown = ", ".join(map(str, incomplete[:3])) + (
            f" and {len(incomplete) - 3} more" if len(incomplete) > 3 else ""
        )
        raise TunelabError(
            f"incomplete run{'s' if len(incomplete) > 1 else ''} (no summary.json): {shown}; finish "
            f"{'each' if len(incomplete) > 1 else 'it'} "
            f"with `tunelab train --config {incomplete[0] / 'config.yaml'} --resume` "
            f"or remove {'them' if len(incomplete) > 1 else 'it'}"
        )
    records = [_read_run(d) for d in dirs]
    for name in ("model", "data", "metric"):
        values = sorted({getattr(r, name) for r in records})
        if len(values) > 1:
            raise TunelabError(
                f"the runs have different {name}s ({', '.join(map(repr, values))}); "
                f"a report compares strategies on one {name}: give only matching runs"
            )
    seen: dict[tuple, Path] = {}
    for r in records:
        key = (r.train_fraction, r.strategy, r.seed, r.fold)
        if key in seen:
            raise TunelabError(
                f"{seen[key]} and {r.path} are the same run (strategy {r.strategy}, seed {r.seed}, fold {r.fold}, "
                f"fraction {r.train_fraction:g}); a repeat would shrink the std: keep one"
            )
        seen[key] = r.path
    return records


REQUIRED = (
    "strategy",
    "score",
    "trainable_params",
    "total_params",
    "train_examples",
    "val_examples",
    "train_seconds",
    "peak_memory_mb",
    "checkpoint_bytes",
)
"""summary.json keys every run has written since format 1; later keys are read with defaults."""


def _read_run(path: Path) -> RunRecord:
    run = RunDir(path)
    config = from_yaml_file(TrainConfig, run.config)
    summary = read_summary(run.summary, required=REQUIRED)  # checked: a damaged key is one line naming it
    metric = summary.get("metric", "accuracy")
    try:
        epochs = run.read_metrics()
        curve = tuple(float(m[f"val_{metric}"]) for m in epochs)
        seconds = [float(m["seconds"]) for m in epochs]
    except (ValueError, KeyError, TypeError) as e:
        raise TunelabError(f"{run.metrics}: damaged epoch records ({e}); train the run again") from None
    if not curve:
        raise TunelabError(
            f"{path} has summary.json but no epochs in metrics.jsonl; the run is damaged: train it again"
        )
    fold = config.fold if config.folds else None
    try:
        score = float(summary["score"])
        scored_on = str(summary.get("scored_on", "validation"))
        if scored_on not in ("test", "validation"):
            raise ValueError(f"scored_on is {scored_on!r}, expected 'test' or 'validation'")
        val_examples = int(summary["val_examples"])
        test_examples = int(summary.get("test_examples") or 0)
        default_eval = test_examples if scored_on == "test" else val_examples
        chance = summary.get("chance_score")
        augment, cached = summary.get("augment"), summary.get("cached_blocks")
        record = RunRecord(
            path=path,
            model=config.model,
            data=config.data,
            strategy=str(summary["strategy"]),
            seed=config.seed,
            fold=fold,
            train_fraction=config.train_fraction,
            train_examples=int(summary["train_examples"]),
            val_examples=val_examples,
            metric=metric,
            score=score,
            trainable_params=int(summary["trainable_params"]),
            total_params=int(summary["total_params"]),
            train_seconds=float(summary["train_seconds"]),
            seconds_per_epoch=statistics.fmean(seconds),
            peak_memory_mb=float(summary["peak_memory_mb"]),
            checkpoint_bytes=int(summary["checkpoint_bytes"]),
            curve=curve,
            val_score=float(summary.get("val_score", score)),
            scored_on=scored_on,
            eval_examples=int(summary.get("eval_examples") or default_eval),
            test_examples=test_examples,
            chance_score=None if chance is None else float(chance),
            flags=_read_flags(summary.get("flags") or [], config.seed, fold),
            augment=None if augment is None else bool(augment),
            cached_blocks=None if cached is None else int(cached),
        )
    except (ValueError, TypeError) as e:
        raise TunelabError(f"{run.summary}: damaged value ({e}); the run is damaged: train it again") from None
    return record


def _read_flags(raw: object, seed: int, fold: int | None) -> tuple[RunFlag, ...]:
    """summary.json's flags: a list of {"flag": name, "message": sentence}."""
    if not isinstance(raw, list):
        raise ValueError(f"flags is {type(raw).__name__}, expected a list")
    flags = []
    for item in raw:
        if not isinstance(item, dict) or "flag" not in item:
            raise ValueError(f"flag {item!r} is not an object with a 'flag' key")
        flags.append(RunFlag(str(item["flag"]), str(item.get("message", item["flag"])), seed, fold))
    return tuple(flags)
