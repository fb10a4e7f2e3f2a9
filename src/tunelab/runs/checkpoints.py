"""Saving and restoring a run's progress: one object owns what each epoch leaves on disk (after timm's CheckpointSaver).

Each epoch ends by writing its metrics, the best model when the epoch improved on it, and a checkpoint of
the epoch for --resume. The checkpoint is a new folder written completely and then committed by rewriting
one small pointer file (checkpoint/latest) atomically; older folders are removed after. An interrupt at
any moment therefore leaves either the previous or the new checkpoint, never a mix, and a resume from it
ends bit for bit like a run that was never interrupted.

May import: fileio, runs.checkpoint_io, runs.held_signals, runs.rundir, runs.trained.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from tunelab.fileio import atomic_write_text, save_json
from tunelab.runs.checkpoint_io import load_optimizer, load_tensors, save_optimizer, save_tensors
from tunelab.runs.held_signals import held_signals
from tunelab.runs.run_files import read_state
from tunelab.runs.rundir import CheckpointFiles, RunDir, remove
from tunelab.runs.trained import load_trained, save_trained

BESIDE = "beside.safetensors"
"""The file in a checkpoint folder holding `CheckpointSaver.beside`."""


@dataclass(frozen=True)
class Progress:
    """Where the epoch loop stands: what a checkpoint's state.json holds beside the scheduler's state."""

    epoch: int = 0
    """Epochs completed."""
    best_score: float = -math.inf
    """The best validation score so far (the run's selection metric: the task's own, or --metric)."""
    best_epoch: int = 0
    """The epoch (counted from 1) that scored `best_score`; model.safetensors holds its weights."""
    bad_epochs: int = 0
    """Epochs since the score last improved: early stopping compares this with --patience."""
    metrics: tuple[dict, ...] = field(default=())
    """One record per completed epoch, as in metrics.jsonl."""

    def after(self, record: dict, score: float) -> tuple[Progress, bool]:
        """The progress once one more epoch is recorded with `score`, and whether that epoch is the best so far.

        Best = the higher score; a tie goes to the lower validation loss (record["val_loss"]): metrics such as
        accuracy or entity F1 on a small validation set tie often (0.0 for several epochs of a slow start),
        and on a tie the model that is more confident where it is right is the better guess. The best
        epoch's loss is read from its record (`best_loss`), so checkpoints keep their format and old ones
        resume with the same rule.
        """
        loss = record.get("val_loss", math.inf)
        improved = score > self.best_score or (score == self.best_score and loss < self.best_loss)
        progress = replace(
            self,
            epoch=self.epoch + 1,
            metrics=(*self.metrics, record),
            bad_epochs=0 if improved else self.bad_epochs + 1,
            best_score=score if improved else self.best_score,
            best_epoch=self.epoch + 1 if improved else self.best_epoch,
        )
        return progress, improved

    @property
    def best_loss(self) -> float:
        """The validation loss of the best epoch (inf before any epoch, or when its record has none)."""
        if not 1 <= self.best_epoch <= len(self.metrics):
            return math.inf
        loss = self.metrics[self.best_epoch - 1].get("val_loss", math.inf)
        return loss if isinstance(loss, (int, float)) else math.inf

    def out_of_patience(self, patience: int | None) -> bool:
        """Early stopping: `patience` epochs in a row without a better score."""
        return patience is not None and self.bad_epochs >= patience


@dataclass(frozen=True)
class CheckpointSaver:
    """Writes each epoch's metrics, best model and checkpoint in the one order that survives a kill; restores them.

    Only the main process saves; every process restores.
    """

    run: RunDir
    """The run directory written to."""
    model: nn.Module
    """The model as the strategy built it (not wrapped by accelerate): its trained tensors are saved."""
    optimizer: Optimizer
    """The optimizer whose state is saved (it may be accelerate's wrapper)."""
    scheduler: LRScheduler
    """The learning-rate schedule whose position is saved."""
    meta: dict
    """Metadata saved with the model's tensors: classes, model, strategy, task."""
    beside: nn.Module | None = None
    """A module trained beside the model and not part of it (DANN's domain classifier): every tensor of it goes
    into each checkpoint (beside.safetensors), never into model.safetensors; None = nothing beside."""

    def save_epoch(self, progress: Progress, improved: bool) -> None:
        """Record the epoch `progress` has just completed.

        Metrics and the best model first, the checkpoint that commits the epoch last: a kill in between
        resumes from the previous epoch and rewrites both exactly as they were.
        """
        run = self.run
        atomic_write_text(
            run.inside(run.metrics), "".join(f"{json.dumps(m, sort_keys=True)}\n" for m in progress.metrics)
        )
        if improved:
            save_trained(run.inside(run.model), self.model, self.meta)
        self._commit(progress)

    def _commit(self, progress: Progress) -> None:
        """Write checkpoint/epoch-N/ completely, then point checkpoint/latest at it, then drop older ones.

        A failure or a stop (a full disk, Ctrl-C, SIGTERM) before the commit removes the folder again: what
        stays is the previous commit, whole, and no epoch folder beside it. The commit itself, pointing
        latest at the folder and deleting the older one, runs with the stop signals held (`held_signals`), so
        a stop lands before it or after it, never between its two steps.
        """
        run, files = self.run, self.run.epoch_checkpoint(progress.epoch)
        remove(run, files.path)  # a half-written folder of a killed earlier attempt
        try:
            run.inside(files.path).mkdir(parents=True)
            save_trained(run.inside(files.trained), self.model, self.meta)
            save_optimizer(run.inside(files.optimizer), self.optimizer)
            if self.beside is not None:
                save_tensors(run.inside(files.path / BESIDE), self.beside.state_dict())
            save_json(run.inside(files.state), {**asdict(progress), "scheduler": self.scheduler.state_dict()})
            with held_signals():
                atomic_write_text(run.inside(run.latest), files.path.name)
                for old in run.checkpoint.glob("epoch-*"):
                    if old.name != files.path.name:
                        remove(run, old)
        except BaseException:
            if not self._points_at(files.path.name):  # stopped before the commit: the folder is not an epoch yet
                remove(run, files.path, strict=False)
            raise

    def _points_at(self, name: str) -> bool:
        """Whether checkpoint/latest names the folder `name` (the commit happened)."""
        try:
            return self.run.latest.read_text().strip() == name
        except OSError:
            return False

    def restore(self, files: CheckpointFiles) -> Progress:
        """Load a committed checkpoint into the model, optimizer and scheduler; returns the loop's progress."""
        load_trained(files.trained, self.model)
        load_optimizer(files.optimizer, self.optimizer)
        if self.beside is not None:
            self.beside.load_state_dict(load_tensors(files.path / BESIDE)[0])
        state = read_state(files.state)  # checked: a damaged file is one line naming the key
        self.scheduler.load_state_dict(state["scheduler"])
        saved = {f.name: state[f.name] for f in fields(Progress) if f.name in state}
        return Progress(**{**saved, "metrics": tuple(state["metrics"])})
