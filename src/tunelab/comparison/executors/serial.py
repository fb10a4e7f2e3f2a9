"""`--executor serial` (the default): the runs one after another on this machine, each in its own process.

Each run may use every core (torch's own choice) unless --run-cpus caps it, and its output reaches the
terminal as written, progress bars included (`comparison.executor.train_in_child`, which also passes
Ctrl-C, SIGTERM and SIGHUP on to the running child and waits for it to save).

May import: comparison.executor, comparison.executors.base, settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunelab.comparison.executor import train_in_child
from tunelab.comparison.executors.base import Finished, Job, Starting
from tunelab.settings import CompareConfig


@dataclass(frozen=True)
class SerialExecutor:
    """One run at a time, in this order."""

    threads: int | None = None
    """CPU threads of each run; None leaves it to torch."""
    slots: int = 1

    @classmethod
    def from_settings(cls, config: CompareConfig) -> SerialExecutor:
        return cls(threads=config.run_cpus)

    def run(self, jobs: Sequence[Job], starting: Starting, finished: Finished) -> None:
        for job in jobs:
            finished(job, train_in_child(starting(job), self.threads))
