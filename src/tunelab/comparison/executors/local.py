"""`--executor local --workers N`: N runs at once on this machine, each its own `tunelab train` process.

A grid is independent runs, so N processes finish it up to N times sooner where one run leaves cores
idle. Each child is told its share of the threads (`--run-cpus`, else cores // N): torch otherwise starts
one thread per core in every child, and N x cores threads spin-wait on each other. Each child's output is
relayed a whole line at a time after its tag '[i/N]' (`comparison.executor.LineRelay`), by one thread per
child; this thread starts the runs, waits for them and calls back the grid.

Ctrl-C: every running child gets one SIGINT and is waited for (each saves its last epoch); a second Ctrl-C
kills them. SIGTERM and SIGHUP are passed on to every running child; no new run starts; once they have all
ended, this process ends the way it was asked to, as the serial executor does.

May import: comparison.executor, comparison.executors.base, settings.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from tunelab.comparison.executor import (
    LineRelay,
    Outcome,
    failure_reason,
    passed_on,
    start_child,
    stop_children,
    train_command,
)
from tunelab.comparison.executors.base import Finished, Job, Starting, machine_cores
from tunelab.settings import CompareConfig


@dataclass
class _Running:
    job: Job
    relay: LineRelay
    thread: threading.Thread
    started: float


@dataclass(frozen=True)
class LocalExecutor:
    """Up to `slots` runs at once, started in plan order as earlier ones end."""

    slots: int
    """Runs at once (--workers)."""
    threads: int
    """CPU threads of each run."""

    @classmethod
    def from_settings(cls, config: CompareConfig) -> LocalExecutor:
        """--workers (else cores // --run-cpus) runs, each with --run-cpus (else cores // workers) threads."""
        cores = machine_cores()
        workers = config.workers or max(1, cores // (config.run_cpus or 1))
        return cls(slots=workers, threads=config.run_cpus or max(1, cores // workers))

    def run(self, jobs: Sequence[Job], starting: Starting, finished: Finished) -> None:
        stream, lock = sys.stderr, threading.Lock()  # the callbacks print too: under the lock, lines stay whole
        waiting = deque(jobs)
        running: dict[subprocess.Popen, _Running] = {}
        ended: queue.SimpleQueue[subprocess.Popen] = queue.SimpleQueue()
        try:
            with passed_on(lambda: list(running)) as received:
                while running or (waiting and not received):
                    while waiting and len(running) < self.slots and not received:
                        job = waiting.popleft()
                        with lock:
                            config = starting(job)
                        child = start_child(train_command(config), self.threads)
                        relay = LineRelay(child.stdout.fileno(), stream, job.tag, lock)
                        thread = threading.Thread(target=_relay, args=(relay, child, ended), name=f"relay {job.tag}")
                        running[child] = _Running(job, relay, thread, time.monotonic())
                        thread.start()
                    child = ended.get()
                    run = running.pop(child)
                    _close(child, run)
                    if not received:  # after SIGTERM the runs end because they were told to: not a failure
                        outcome = Outcome(
                            child.returncode,
                            time.monotonic() - run.started,
                            failure_reason(child.returncode, run.relay.tail),
                        )
                        with lock:
                            finished(run.job, outcome)
        except BaseException:  # Ctrl-C, or a callback's error: no run is left training unattended
            stop_children(running)
            for child, run in running.items():
                _close(child, run)
            raise


def _relay(relay: LineRelay, child: subprocess.Popen, ended: queue.SimpleQueue) -> None:
    try:
        relay.until_closed()
    finally:
        ended.put(child)


def _close(child: subprocess.Popen, run: _Running) -> None:
    """Wait for the child and its relay thread (its output is all written), then close its pipe."""
    child.wait()
    run.thread.join()
    child.stdout.close()
