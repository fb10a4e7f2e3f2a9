"""Each comparison run in its own process: `python -m tunelab train <its settings as flags>`.

Why a process per run: a long-lived process's resident memory does not come back down after a large run,
so every later run in it would report that peak; a crash (out of memory, a segfault in a native library)
would end the whole comparison; and the time of one run would include the warm caches of the previous
ones. A child runs exactly the code path a user's `tunelab train` runs, with every setting passed as a
flag (`tunelab.settings.fields.to_argv`), and measures its own time and peak memory into summary.json.

The child's output (stdout and stderr, in order) is relayed to this process's stderr as it comes, so
progress shows live and the results table a compare prints on stdout stays clean. The child runs in its
own process group: Ctrl-C reaches this process only, which passes one SIGINT on, lets the child save its
last epoch and exit, and then raises KeyboardInterrupt. SIGTERM and SIGHUP are passed on the same way.

Several children at once (`comparison.executors`) share one terminal: their output is relayed a whole line at
a time with the run's tag in front (`LineRelay`), progress-bar redraws dropped, and each child is told its
share of the cores (`child_environment(threads)`) so N runs do not fight over them. `train_on_worker` is the
body of a Ray task: the same child, started on whichever machine Ray chose.

May import: settings, errors (and the standard library): no torch in the parent.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import brief
from tunelab.settings import TrainConfig
from tunelab.settings.fields import to_argv

ERROR_PREFIX = "tunelab: error: "
"""How the CLI starts the one line of a TunelabError (exit code 2)."""

TAIL_CHARS = 8192
"""How much of the end of a child's output is kept to name why it failed."""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Outcome:
    """How one child run ended."""

    returncode: int
    """The child's exit code; negative: killed by that signal."""
    seconds: float
    """Wall time from start to exit, as this process saw it."""
    reason: str
    """Why it failed, in one line ('' when it exited with 0)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""The environment variables torch's CPU kernels (OpenMP, MKL, OpenBLAS) take their thread count from."""


def train_command(config: TrainConfig) -> list[str]:
    """The command that trains `config`: `tunelab train` in this interpreter, every setting a flag."""
    return command_for(to_argv(config))


def command_for(flags: list[str]) -> list[str]:
    """`tunelab train <flags>` in this interpreter (on a Ray worker: the worker's)."""
    return [sys.executable, "-m", "tunelab", "train", *flags]


def child_environment(threads: int | None = None) -> dict[str, str]:
    """This process's environment, with the tunelab that is running now first on PYTHONPATH.

    A child must run the same code as its parent even when the parent found tunelab through a path of
    its own (a test runner, a notebook's sys.path). Unbuffered, so its output arrives as it is written;
    COLUMNS from the terminal, so progress bars fit it although the child writes into a pipe.

    `threads` (when given) caps the child's CPU threads: without it torch starts one per core in every child,
    and N children on one machine then spin-wait on each other's cores (once on this busy 2-core machine, a
    tiny epoch took 8.5 s with 2 threads and 0.1 s with 1).
    """
    source = str(Path(__file__).resolve().parents[2])  # the folder holding this tunelab package
    paths = [source, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    with contextlib.suppress(OSError, ValueError, AttributeError):  # not a terminal, or a stream without a file
        if sys.stderr.isatty():
            env.setdefault("COLUMNS", str(os.get_terminal_size(sys.stderr.fileno()).columns))
    return env


def start_child(command: list[str], threads: int | None = None, cwd: str | None = None) -> subprocess.Popen:
    """Start `command` in its own process group (Ctrl-C reaches the parent only), its output in one pipe.

    A child inherits its parent's blocked signals, and a Ray worker blocks SIGINT (Ray's processes ignore the
    terminal's Ctrl-C): a run started there would never see the SIGINT that asks it to save and stop. So the
    signals this module sends are unblocked in the child, when blocked here.
    """
    group = {"process_group": 0} if os.name == "posix" else {}
    blocked = _blocked(signal.SIGINT, *PASSED_ON)
    if blocked:
        group["preexec_fn"] = functools.partial(signal.pthread_sigmask, signal.SIG_UNBLOCK, blocked)
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_environment(threads),
        cwd=cwd,
        **group,
    )


def _blocked(*signals: signal.Signals) -> set[signal.Signals]:
    """Which of `signals` the calling thread blocks (none where the system has no signal masks)."""
    if not hasattr(signal, "pthread_sigmask"):
        return set()
    return set(signals) & signal.pthread_sigmask(signal.SIG_BLOCK, [])


def train_in_child(config: TrainConfig, threads: int | None = None) -> Outcome:
    """Train `config` in a child process and wait for it; relay its output; return how it ended.

    KeyboardInterrupt (Ctrl-C) while it trains: the child gets one SIGINT, this waits until it has saved
    and exited, then re-raises. A second Ctrl-C while waiting kills the child (its last committed
    checkpoint stays: commits are atomic).
    """
    started = time.monotonic()
    child = start_child(train_command(config), threads)
    with passed_on(lambda: [child]):
        return supervise(child, Relay(child.stdout.fileno(), sys.stderr), started)


def _stop(child: subprocess.Popen, relay: Relay) -> None:
    """Interrupt the child as Ctrl-C would and wait for it; kill it on a second Ctrl-C."""
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGINT)
    try:
        relay.until_closed()
        child.wait()
    except KeyboardInterrupt:
        child.kill()
        child.wait()


PASSED_ON = (signal.SIGTERM, signal.SIGHUP) if os.name == "posix" else ()
"""Signals a parent passes on to its children (SIGINT needs none: Ctrl-C becomes KeyboardInterrupt)."""


@contextlib.contextmanager
def passed_on(children: Callable[[], Iterable[subprocess.Popen]], signals: tuple[signal.Signals, ...] = PASSED_ON):
    """While the children run, `signals` sent to this process go to each of `children()`; then to this process.

    The children have their own process groups, so a `kill` of the parent alone would otherwise leave them
    training with nobody waiting for them. Yields the signals received so far, so a parent that starts more
    children can stop starting them. Signal handlers can only be set in the main thread; elsewhere this does
    nothing.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def pass_on(signum, frame):
        received.append(signum)
        for child in children():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in signals}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in received[:1]:  # the children have ended by now; this process ends the way it was asked to
        signal.raise_signal(signum)


class Relay:
    """Copies what a child writes (a pipe) to a text stream as it comes, and keeps the last TAIL_CHARS."""

    def __init__(self, fd: int, stream):
        self.fd = fd
        self.stream = stream
        self.tail = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def until_closed(self) -> None:
        """Relay until the child closes its end (it exited); a KeyboardInterrupt leaves the rest for a next call."""
        while chunk := os.read(self.fd, 65536):
            text = self._decoder.decode(chunk)
            self.stream.write(text)
            self.stream.flush()
            self.tail = (self.tail + text)[-TAIL_CHARS:]


class LineRelay:
    """Copies a child's output to a stream shared with other children: whole lines, each after the run's tag.

    Lines of several runs at once stay whole (one write under `lock` each), and a progress bar's redraws
    (carriage returns) keep only what the line finally shows, so a bar does not print one line per step.
    Keeps the last TAIL_CHARS as written, for `failure_reason`.
    """

    def __init__(self, fd: int, stream, tag: str, lock: threading.Lock):
        self.fd = fd
        self.stream = stream
        self.tag = tag
        self.lock = lock
        self.tail = ""
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def until_closed(self) -> None:
        """Relay until the child closes its end (it exited), then the unfinished last line, if any."""
        while chunk := os.read(self.fd, 65536):
            text = self._decoder.decode(chunk)
            self.tail = (self.tail + text)[-TAIL_CHARS:]
            *lines, self._partial = (self._partial + text).split("\n")
            self._write(lines)
        self._write([self._partial])
        self._partial = ""

    def _write(self, lines: list[str]) -> None:
        shown = [line.rsplit("\r", 1)[-1].rstrip() for line in lines]
        text = "".join(f"{self.tag} {line}\n" for line in shown if line)
        if text:
            with self.lock:
                self.stream.write(text)
                self.stream.flush()


def train_on_worker(flags: list[str], tag: str, threads: int, cwd: str) -> Outcome:
    """The body of a Ray task: `tunelab train <flags>` in a child on this machine, its lines on stderr.

    Run in the folder the compare started in (`cwd`), so relative paths in the flags mean what they meant
    there; Ray forwards a worker's stderr to the compare's. Ray cancels a task by raising KeyboardInterrupt
    in it: the child then gets one SIGINT and saves its last epoch, as under Ctrl-C in a serial compare.
    """
    if not Path(cwd).is_dir():
        reason = f"the folder the compare started in, {cwd}, is not on this node: use storage every node mounts"
        return Outcome(2, 0.0, reason)
    started = time.monotonic()
    child = start_child(command_for(flags), threads, cwd)
    return supervise(child, LineRelay(child.stdout.fileno(), sys.stderr, tag, threading.Lock()), started)


def supervise(child: subprocess.Popen, relay, started: float) -> Outcome:
    """Relay `child`'s output until it ends and say how it ended; Ctrl-C stops it (its last epoch kept) first.

    `relay` passes the child's lines on (`Relay`, or `LineRelay` tagging them for runs side by side) and keeps
    the tail that a failure's reason quotes; `started` is when the child was started (monotonic seconds).
    """
    try:
        relay.until_closed()
        child.wait()
    except KeyboardInterrupt:
        _stop(child, relay)
        raise
    finally:
        child.stdout.close()
    return Outcome(child.returncode, time.monotonic() - started, failure_reason(child.returncode, relay.tail))


def stop_children(children: Iterable[subprocess.Popen]) -> None:
    """Interrupt every child as Ctrl-C would and wait for all of them; kill those left on a second Ctrl-C.

    Their output must be read by others meanwhile (relay threads), or a child saving its epoch could block on
    a full pipe: this only signals and waits. The caller re-raises the first interruption.
    """
    children = list(children)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


def last_line(output: str) -> str:
    """The last line a terminal would show: after the last newline and carriage return, without colour codes."""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in ANSI.sub("", output).splitlines()]
    return next((line for line in reversed(lines) if line), "")


def failure_reason(returncode: int, output: str) -> str:
    """Why a child failed, in one line: its error message, the signal that ended it, or its last line."""
    if returncode == 0:
        return ""
    line = last_line(output)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the system may have run out of memory)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    if returncode == 2 and line.startswith(ERROR_PREFIX):
        return brief(line.removeprefix(ERROR_PREFIX), 300)
    return f"exit code {returncode}" + (f": {brief(line, 300)}" if line else "")
