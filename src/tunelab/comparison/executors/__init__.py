"""Executors: where and how many at once the runs of a compare train (--executor serial | local | ray).

    base.py         the contract (Job, Executor, the two callbacks) and what every executor keeps
    serial.py       one run after another on this machine (the default)
    local.py        --workers runs at once on this machine, each with its share of the cores
    ray_cluster.py  each run a Ray task, on a local Ray instance or a cluster (pip install 'tunelab[ray]')
    storage.py      whether the runs can write --out, here and on every node of a cluster

`open_executor` picks one by name; the grid only ever sees the `Executor` it yields. A new executor is one
file with a `from_settings` (or a context manager, when it holds a connection) and one line in EXECUTORS.
The names are also the choices of the `executor` setting (`settings.compare`, which cannot import this
layer); a test keeps the two lists equal.

May import: comparison.executor, settings, errors (and `ray`, only in ray_cluster, only when chosen).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

from tunelab.comparison.executors.base import Executor, Job
from tunelab.errors import TunelabError
from tunelab.settings import CompareConfig


def _serial(config: CompareConfig) -> ContextManager[Executor]:
    from tunelab.comparison.executors.serial import SerialExecutor

    return contextlib.nullcontext(SerialExecutor.from_settings(config))


def _local(config: CompareConfig) -> ContextManager[Executor]:
    from tunelab.comparison.executors.local import LocalExecutor

    return contextlib.nullcontext(LocalExecutor.from_settings(config))


def _ray(config: CompareConfig) -> ContextManager[Executor]:
    from tunelab.comparison.executors.ray_cluster import open_ray

    return open_ray(config)


EXECUTORS: dict[str, Callable[[CompareConfig], ContextManager[Executor]]] = {
    "serial": _serial,
    "local": _local,
    "ray": _ray,
}
"""--executor name -> how to open it (a context manager: Ray's connection is closed at the end)."""


def check_executor_settings(config: CompareConfig) -> None:
    """Refuse executor settings that would be silently ignored, before anything is planned or trained.

    --workers with serial or ray is an error rather than a warning: whoever typed it wanted runs at once and
    would otherwise wait hours for a serial compare (ray takes its parallelism from --run-cpus/--run-gpus).
    """
    name = config.executor
    if name not in EXECUTORS:
        raise TunelabError(f"--executor {name}: expected one of {', '.join(EXECUTORS)}")
    if config.workers is not None and name != "local":
        how = "runs one at a time" if name == "serial" else "runs as many at once as the cluster's CPUs and GPUs hold"
        raise TunelabError(
            f"--workers {config.workers} needs --executor local; --executor {name} {how}: add --executor local or "
            "drop --workers"
        )
    if name != "ray":
        given = [f"--ray-address {config.ray_address}"] if config.ray_address is not None else []
        given += [f"--run-gpus {config.run_gpus:g}"] if config.run_gpus else []
        if given:
            raise TunelabError(f"{given[0]} applies to --executor ray only: add --executor ray or drop it")
    if config.run_gpus > 1 and not float(config.run_gpus).is_integer():
        raise TunelabError(
            f"--run-gpus {config.run_gpus:g}: a run takes a fraction of one GPU (e.g. 0.5) or whole GPUs (e.g. 2)"
        )


def open_executor(config: CompareConfig) -> ContextManager[Executor]:
    """The executor --executor names, as a context manager (see EXECUTORS); checks its settings first."""
    check_executor_settings(config)
    return EXECUTORS[config.executor](config)


__all__ = ["EXECUTORS", "Executor", "Job", "check_executor_settings", "open_executor"]
