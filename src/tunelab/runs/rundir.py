"""The run directory: its layout and every rule about what may happen in it.

```
runs/NAME/
  config.yaml          the resolved TrainConfig (flags + file + defaults, automatic values worked out)
  metrics.jsonl        one line per completed epoch
  model.safetensors    the best epoch's trained tensors (only what the strategy trained), classes in metadata
  summary.json         written last: a run without it is incomplete
  checkpoint/          the last committed epoch, for --resume:
    latest               the pointer: the name of the committed folder beside it
    epoch-NNNN/          trained.safetensors, optimizer.safetensors, state.json
  cache/               spilled feature caches (deleted at the end of a run)
  tracking/            --log-with's TensorBoard files and MLflow store, when --tracking-dir is left unset
  trackers.json        --log-with mlflow: the MLflow run this run logs to, which a --resume continues
  .tunelab.lock        held by the process training the run (`runs.run_lock`; removed when it ends)
```

The rules: one process at a time trains in a run folder (`runs.run_lock`); a run starts only in a new or
empty folder or one holding nothing but a run's own files (it deletes its checkpoint/ and cache/ when it
ends, so a foreign folder is refused); it resumes only with the settings it was started with (compared
resolved, by `runs.identity`); the checkpoint pointer names a folder beside it and nothing else; it writes
and deletes only inside its folder, never through a symbolic link planted there (`RunDir.inside`); a run
that fails keeps its last committed checkpoint and nothing more. What the files hold, checked when read, is
`runs.run_files`; what the tensors in them are, and how a finished run is loaded back, is `runs.trained`;
writing a checkpoint is `runs.checkpoints`.

No torch here: comparisons and reports read run directories without loading a model.

May import: errors, fileio, settings, runs.run_files, runs.run_lock.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError, brief
from tunelab.fileio import read_text
from tunelab.runs.run_files import FORMAT_VERSION as FORMAT_VERSION  # where the loop and reports look for it
from tunelab.runs.run_files import read_metrics, read_summary
from tunelab.runs.run_lock import LOCK_NAME
from tunelab.settings import TrainConfig

TEMP_FILE = r"\..+\.tmp|\.tmp[A-Za-z0-9]{6}"
"""Temporary files of an atomic write: ours (`fileio.atomic_write`: .NAME.XXXXXXXX.tmp) and the one safetensors
writes before renaming it over ours (.tmpXXXXXX). A killed process leaves them; the next run removes them."""

RUN_FILE = re.compile(
    rf"config\.yaml|metrics\.jsonl|model\.safetensors|summary\.json|checkpoint|cache|tracking|trackers\.json"
    rf"|{re.escape(LOCK_NAME)}|{TEMP_FILE}"
)
CACHE_FILE = re.compile(r"(train|val|target)-\d+\.npy")  # target: DANN's unlabelled examples
CHECKPOINT_FILE = re.compile(rf"latest|epoch-\d{{4,}}|{TEMP_FILE}")
"""What a run directory, its cache/ and its checkpoint/ may hold: anything else is not ours to delete."""

CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}")
"""What checkpoint/latest may hold: a folder name beside it, never a path that leads out of the run."""


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
    def trackers(self) -> Path:
        """The tracker runs this run logs to (`runs.tracking`), so that a resumed run continues them."""
        return self.path / "trackers.json"

    @property
    def complete(self) -> bool:
        return self.summary.is_file()

    def epoch_checkpoint(self, epoch: int) -> CheckpointFiles:
        """The checkpoint folder of epoch `epoch` (counted from 1)."""
        return CheckpointFiles(self.checkpoint / f"epoch-{epoch:04d}")

    def read_metrics(self) -> list[dict]:
        """metrics.jsonl, one object per completed epoch, checked (`runs.run_files`)."""
        return read_metrics(self.metrics)

    def inside(self, path: Path) -> Path:
        """`path`, checked before anything is written to or deleted at it: it lies below the run folder, and
        no part of it below the run folder is a symbolic link.

        Every write and delete in a run goes through here (config, metrics, model, summary, checkpoint/ and its
        epoch folders, cache/, temporary files), so a link planted in a run folder (`cache` -> a folder
        elsewhere) cannot make a run write or delete outside it. The run folder itself may be a link: the
        user chose it with --out.
        """
        try:
            parts = path.relative_to(self.path).parts
        except ValueError:
            raise TunelabError(f"{path} is not inside the run folder {self.path}; a run writes only there") from None
        current = self.path
        for part in parts:
            current = current / part
            if part == "..":
                raise TunelabError(f"{path} leads out of the run folder {self.path}; a run writes only inside it")
            if current.is_symlink():
                raise TunelabError(
                    f"{current} is a symbolic link (to {brief(os.readlink(current), 200)}); a run writes and deletes "
                    "only inside its own folder, so it does not follow links there: remove the link"
                )
        return path


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

    Called before anything in `out` is touched: the folder may not be ours. A symbolic link where a run file
    or folder should be is refused here, before the run writes or deletes anything (see `RunDir.inside`).
    """
    for path in (run.config, run.metrics, run.model, run.summary, run.cache, run.checkpoint, run.latest):
        run.inside(path)
    if not config.resume:
        if run.complete or run.latest.is_file():
            state = "a finished run" if run.complete else "an unfinished run (continue it with --resume)"
            raise TunelabError(f"{run.path} already holds {state}; choose another --out")
        check_only_run_files(run)
        return StartPoint()
    if run.complete:
        read_summary(run.summary)  # a newer format, or a damaged file, is refused before anything is tidied
        return StartPoint(complete=True)
    if not run.latest.is_file():
        check_only_run_files(run)
        return StartPoint()
    # Whether the settings match the saved run's is `runs.identity.check_resume`: it needs them resolved.
    return StartPoint(checkpoint=committed_checkpoint(run))


def committed_checkpoint(run: RunDir) -> CheckpointFiles:
    """The committed checkpoint that checkpoint/latest names, checked: a damaged pointer is an error, not a path."""
    name = read_text(run.latest, "checkpoint pointer").strip()
    folder = run.checkpoint / name
    if not CHECKPOINT_NAME.fullmatch(name) or not folder.is_dir():
        raise TunelabError(
            f"{run.latest} is damaged: it names {name[:60]!r}, not a checkpoint folder in {run.checkpoint}; "
            "start the run again without --resume in a new --out"
        )
    return CheckpointFiles(run.inside(folder))  # a linked epoch folder would be deleted through the link later


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
    """Temporary files of atomic writes that a killed process left behind (see TEMP_FILE).

    Called when a run starts; a symbolic link where checkpoint/ or an epoch folder should be stops it there.
    """
    pattern = re.compile(TEMP_FILE)
    for folder in (run.path, run.checkpoint, *sorted(run.checkpoint.glob("epoch-*"))):
        if run.inside(folder).is_dir():
            for temp in folder.iterdir():
                if pattern.fullmatch(temp.name):
                    run.inside(temp).unlink(missing_ok=True)


def remove(run: RunDir, path: Path, strict: bool = True) -> None:
    """Delete a file or folder of the run, checked by `RunDir.inside` first.

    `strict=False` is for tidying after a failure: a path that fails the check is left alone (the error that
    matters is the one that stopped the run), never followed.
    """
    try:
        run.inside(path)
    except TunelabError:
        if strict:
            raise
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(run: RunDir) -> None:
    """A complete run needs neither its feature cache nor its checkpoint: nothing is left to resume."""
    remove(run, run.cache)
    remove(run, run.checkpoint)


def clean_up_after_failure(run: RunDir, created: bool) -> None:
    """What a failed or interrupted run leaves: its last committed checkpoint for --resume and nothing else.

    The spilled feature cache goes. When no epoch was committed, nothing of the run stays: a run directory it
    `created` goes, and in a folder that was there before, the run files it wrote (config.yaml, metrics,
    model), so bad input or a SIGTERM before the first epoch never leaves a half-written run behind. A
    finished run (a --resume that failed while tidying) keeps everything.
    """
    remove(run, run.cache, strict=False)
    if run.complete or run.latest.is_file():
        return
    if created:
        shutil.rmtree(run.path, ignore_errors=True)
        return
    for path in (run.config, run.metrics, run.model, run.checkpoint, run.path / "tracking", run.trackers):
        remove(run, path, strict=False)
