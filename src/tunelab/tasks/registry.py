"""The task registry: --task values -> light entries saying what each task is and where its code lives.

An entry is a declaration, like an entry point: name, modality, a one-line summary, whether it has one label
per input, and "module:Class" of the implementation. The class (a `tasks.base.Task`, with torch, tokenisers
and readers behind it) is imported on the first `get_task`, so the CLI can list tasks, and settings and
advise can check them, without loading torch. This module imports no task.

May import: errors. Imports a task's module by name, lazily, in `task_class`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone
    from tunelab.tasks.base import Task


@dataclass(frozen=True)
class TaskEntry:
    """One registered task, declared without importing it."""

    name: str
    """The --task value, e.g. 'token-classification'."""
    modality: Literal["image", "text"]
    """Which backbones fit (must equal the class's own `modality`)."""
    summary: str
    """One line for --help: what is labelled and which files it reads."""
    target: str
    """Where the Task subclass lives, as 'package.module:ClassName'."""
    single_label: bool
    """One label per input (an image, a sentence) and a plain classification head: the tasks `advise`
    measures and whose runs can serve as a backbone for another run."""


REGISTRY: dict[str, TaskEntry] = {}
"""Every registered task by name, in registration order."""


def register_task(entry: TaskEntry) -> TaskEntry:
    """Add a task's entry; its module is not imported until the task is used."""
    if entry.name in REGISTRY or entry.name == "auto":
        raise ValueError(f"task '{entry.name}' is already registered or reserved")
    module, sep, attribute = entry.target.partition(":")
    if not (module and sep and attribute):
        raise ValueError(f"task '{entry.name}': target must be 'package.module:ClassName', got {entry.target!r}")
    REGISTRY[entry.name] = entry
    return entry


def unregister_task(name: str) -> None:
    """Remove a task from the registry (for tests and experiments that register one for a while)."""
    if name not in REGISTRY:
        raise KeyError(f"task '{name}' is not registered")
    del REGISTRY[name]


@contextmanager
def registered_task(entry: TaskEntry) -> Iterator[TaskEntry]:
    """Register `entry` for the duration of a `with` block, and unregister it afterwards even on error."""
    register_task(entry)
    try:
        yield entry
    finally:
        unregister_task(entry.name)


def task_names() -> tuple[str, ...]:
    """Every registered --task value (without 'auto'), in registration order."""
    return tuple(REGISTRY)


def single_label_tasks() -> tuple[str, ...]:
    """The tasks with one label per input: what `advise` handles and what a run-as-backbone may come from."""
    return tuple(name for name, entry in REGISTRY.items() if entry.single_label)


def task_entry(name: str) -> TaskEntry:
    """The entry for a --task value (not 'auto': resolve that with `infer_task` first)."""
    if name not in REGISTRY:
        raise TunelabError(f"unknown task '{name}'; valid: auto, {', '.join(REGISTRY)}")
    return REGISTRY[name]


def task_class(name: str) -> type[Task]:
    """Import and return the Task subclass for a --task value, checking it matches its declaration."""
    entry = task_entry(name)
    module, _, attribute = entry.target.partition(":")
    cls = getattr(importlib.import_module(module), attribute)  # lazy: task modules import torch
    if (cls.name, cls.modality) != (entry.name, entry.modality):
        raise TypeError(
            f"{entry.target} declares name={cls.name!r}, modality={cls.modality!r}; "
            f"its registry entry says name={entry.name!r}, modality={entry.modality!r}"
        )
    return cls


def get_task(name: str) -> Task:
    """A fresh instance of the task for a --task value (not 'auto': resolve that with `infer_task` first)."""
    return task_class(name)()


def check_modality(task: str, backbone: Backbone) -> None:
    """Refuse a text model for an image task and the other way round, before anything is trained.

    The task's modality comes from its registry entry, so a new task needs no rule here.
    """
    want = task_entry(task).modality
    if backbone.modality != want:
        raise TunelabError(
            f"{backbone.name} is a model for {backbone.modality}s but the task is {task}; "
            f"pick a {want} model (see `tunelab models`)"
        )
