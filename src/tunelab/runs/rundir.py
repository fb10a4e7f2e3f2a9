"""The run directory: its layout and every rule about what may happen in it.

```
runs/NAME/
  config.yaml          the resolved TrainConfig (flags + file + defaults)
  metrics.jsonl        one line per completed epoch
  model.safetensors    the best epoch's trained tensors (only what the strategy trained), classes in metadata
  summary.json         written last: a run without it is incomplete
  checkpoint/          the last committed epoch, for --resume:
    latest               the pointer: the name of the committed folder beside it
    epoch-NNNN/          trained.safetensors, optimizer.safetensors, state.json
  cache/               spilled feature caches (deleted at the end of a run)
```

The rules: a run starts only in a new or empty folder or one holding nothing but a run's own files (it
deletes its checkpoint/ and cache/ when it ends, so a foreign folder is refused); it resumes only with the
settings it was started with; the checkpoint pointer names a folder beside it and nothing else; a run that
fails keeps its last committed checkpoint and nothing more. What the tensors in those files are, and how
a finished run is loaded back, is `runs.trained`; writing a checkpoint is `runs.checkpoints`.

No torch here: comparisons and reports read run directories without loading a model.

May import: errors, fileio, settings.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.errors import TunelabError, brief
from tunelab.fileio import load_json, read_text
from tunelab.settings import TrainConfig, from_yaml_file

FORMAT_VERSION = 1
"""The version of what a run directory holds; a newer one is refused with 'upgrade tunelab'."""

RUN_FILE = re.compile(r"config\.yaml|metrics\.jsonl|model\.safetensors|summary\.json|checkpoint|cache|\..*\.tmp")
CACHE_FILE = re.compile(r"(train|val)-\d+\.npy")
CHECKPOINT_FILE = re.compile(r"latest|epoch-\d{4,}|\..*\.tmp")
"""What a run directory, its cache/ and its checkpoint/ may hold: anything else is not ours to delete."""

CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}")
"""What checkpoint/latest may hold: a folder name beside it, never a path that leads out of the run."""

RESUME_MAY_DIFFER = {"resume", "epochs", "patience", "num_workers", "out"}
"""Settings a --resume may change: how long to train and how to load, never what is trained (out: the
run directory may have moved)."""


@dataclass(frozen=True)
class CheckpointFiles:
    """Paths inside one epoch's checkpoint folder, checkpoint/epoch-NNNN/."""

    path: Path
    """The folder itself."""

    @property
    def trained(self) -> Path:
        return self.path / "trained.safetensors"

    @property
    def optimizer(self) -> Path:
        return self.path / "optimizer.safetensors"

    @property
    def state(self) -> Path:
        """Loop progress and scheduler state, as JSON."""
        return self.path / "state.json"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path
    """The run directory itself."""

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def latest(self) -> Path:
        """The checkpoint pointer: rewriting it atomically is what commits an epoch."""
        return self.checkpoint / "latest"

    @property
    def cache(self) -> Path:
        return self.path / "cache"

    @property
    def complete(self) -> bool:
        return self.summary.is_file()

    def epoch_checkpoint(self, epoch: int) -> CheckpointFiles:
        """The checkpoint folder of epoch `epoch` (counted from 1)."""
        return CheckpointFiles(self.checkpoint / f"epoch-{epoch:04d}")

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- may a run start or resume here?


@dataclass(frozen=True)
class StartPoint:
    """Where a run begins, as its run directory allows."""

    checkpoint: CheckpointFiles | None = None
    """The committed checkpoint to continue from; None: start at epoch 0."""
    complete: bool = False
    """--resume of a run that had already finished (a kill can land after summary.json was written):
    nothing to train, only leftovers to tidy."""


def check_start(run: RunDir, config: TrainConfig) -> StartPoint:
    """Refuse to overwrite a run or a foreign folder; with --resume, find the checkpoint to continue from.

    Called before anything in `out` is touched: the folder may not be ours.
    """
    if not config.resume:
        if run.complete or run.latest.is_file():
            state = "a finished run" if run.complete else "an unfinished run (continue it with --resume)"
            raise TunelabError(f"{run.path} already holds {state}; choose another --out")
        check_only_run_files(run)
        return StartPoint()
    if run.complete:
        summary = load_json(run.summary)
        if not isinstance(summary, dict) or int(summary.get("format_version", 0)) > FORMAT_VERSION:
            raise TunelabError(f"{run.summary} was written by a newer tunelab (or is damaged); upgrade tunelab")
        return StartPoint(complete=True)
    if not run.latest.is_file():
        check_only_run_files(run)
        return StartPoint()
    check_same_settings(run, config)
    return StartPoint(checkpoint=committed_checkpoint(run))


def check_same_settings(run: RunDir, config: TrainConfig) -> None:
    """A resumed run trains what it was started to train: only RESUME_MAY_DIFFER may change.

    Settings left unset (None), and lr/task left to be worked out ('auto'), take the saved run's values.
    """
    saved = from_yaml_file(TrainConfig, run.config)
    differs = [
        k for k, v in asdict(config).items() if k not in RESUME_MAY_DIFFER and v is not None and v != getattr(saved, k)
    ]
    differs = [k for k in differs if not (k in ("lr", "task") and getattr(config, k) in (None, "auto"))]
    if differs:
        raise TunelabError(f"cannot resume {run.path}: settings differ from the saved run: {', '.join(differs)}")


def committed_checkpoint(run: RunDir) -> CheckpointFiles:
    """The committed checkpoint that checkpoint/latest names, checked: a damaged pointer is an error, not a path."""
    name = read_text(run.latest, "checkpoint pointer").strip()
    folder = run.checkpoint / name
    if not CHECKPOINT_NAME.fullmatch(name) or not folder.is_dir():
        raise TunelabError(
            f"{run.latest} is damaged: it names {name[:60]!r}, not a checkpoint folder in {run.checkpoint}; "
            "start the run again without --resume in a new --out"
        )
    return CheckpointFiles(folder)


def check_only_run_files(run: RunDir) -> None:
    """Refuse an --out that holds other files: a run deletes its checkpoint/ and cache/ folders when it ends,
    so `--out .` in a project with a cache/ folder would otherwise lose the user's files."""
    if not run.path.is_dir():
        if run.path.exists():
            raise TunelabError(f"--out {run.path} is a file; give a folder for the run")
        return
    ours = {run.path: RUN_FILE, run.cache: CACHE_FILE, run.checkpoint: CHECKPOINT_FILE}
    foreign = sorted(
        p.relative_to(run.path).as_posix()
        for folder, pattern in ours.items()
        if folder.is_dir()
        for p in folder.iterdir()
        if not pattern.fullmatch(p.name)
    )
    if foreign:
        raise TunelabError(
            f"--out {run.path} already holds other files ({brief(', '.join(foreign), 80)}); a run writes and deletes "
            "its own files there, so give it a new or empty folder"
        )


# ---------------------------------------------------------------- tidying


def remove_stale_temp_files(run: RunDir) -> None:
    """Temporary files of atomic writes that a killed process left behind (see fileio.atomic_write)."""
    for folder in (run.path, run.checkpoint, *run.checkpoint.glob("epoch-*")):
        for temp in folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)


def remove_leftovers(run: RunDir) -> None:
    """A complete run needs neither its feature cache nor its checkpoint: nothing is left to resume."""
    shutil.rmtree(run.cache, ignore_errors=True)
    shutil.rmtree(run.checkpoint, ignore_errors=True)


def clean_up_after_failure(run: RunDir, created: bool) -> None:
    """What a failed or interrupted run leaves: its last committed checkpoint for --resume and nothing else.

    The spilled feature cache goes; a run directory the run `created` goes too when no epoch was committed,
    so bad input never leaves a half-written run behind.
    """
    shutil.rmtree(run.cache, ignore_errors=True)
    if created and not run.latest.is_file():
        shutil.rmtree(run.path, ignore_errors=True)
