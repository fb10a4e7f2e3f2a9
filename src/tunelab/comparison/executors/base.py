"""The executor contract: how the runs of a compare get trained, one after another or many at once.

The grid (`comparison.grid`) plans the runs, skips the finished ones and hands the rest to an executor as
`Job`s in plan order, with two callbacks: `starting(job)` right before a run starts (it announces the run
with the time left, discards a run that --rerun retrains, and returns the settings to train), and
`finished(job, outcome)` as it ends. The grid and the report never learn which executor ran: every run is
`tunelab train` in a child process writing the same run folder under --out, whichever machine it ran on.

What every executor keeps:
- a failed run is handed to `finished` like any other and the rest go on;
- Ctrl-C or SIGTERM stops every running run the way Ctrl-C stops `tunelab train` (each keeps its last
  epoch for the next compare to resume), starts no new one, and lets the KeyboardInterrupt through;
- runs are deterministic per seed: the child gets the same flags whoever starts it, and `run_cpus` threads
  when given, so executors given the same --run-cpus produce bit-identical numbers. (The thread count is
  the one thing that may differ when it is left unset: float sums in another order shift the last digits,
  and over epochs a few predictions; benchmarks/results/executors.md shows both.)

May import: comparison.executor, settings, errors (and the standard library).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tunelab.comparison.executor import Outcome
from tunelab.settings import TrainConfig


@dataclass(frozen=True)
class Job:
    """One run of the grid that is still to train."""

    index: int
    """Its position in the whole grid, from 1 (skipped runs count)."""
    total: int
    """Runs in the whole grid."""
    label: str
    """How progress names it: '[i/N] strategy, seed s (fold f, ...)'."""
    config: TrainConfig
    """Its settings as planned (`starting` may return them changed: a discarded run no longer resumes)."""

    @property
    def tag(self) -> str:
        """'[i/N]': what each line of its output starts with when several runs share the terminal."""
        return f"[{self.index}/{self.total}]"


Starting = Callable[[Job], TrainConfig]
"""Called right before a job's run starts; returns the settings to train it with."""

Finished = Callable[[Job, Outcome], None]
"""Called once per job as its run ends, whichever way."""


class Executor(Protocol):
    """Trains the jobs of a compare; one small implementation per `--executor` value."""

    slots: int
    """How many runs it trains at once (the estimate of the time left divides by it)."""

    def run(self, jobs: Sequence[Job], starting: Starting, finished: Finished) -> None:
        """Train every job, calling `starting` and `finished` from the calling thread (see the module docstring)."""
        ...


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
