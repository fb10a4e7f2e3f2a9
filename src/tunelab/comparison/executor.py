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

May import: settings, errors (and the standard library): no torch in the parent.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
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


def train_command(config: TrainConfig) -> list[str]:
    """The command that trains `config`: `tunelab train` in this interpreter, every setting a flag."""
    return [sys.executable, "-m", "tunelab", "train", *to_argv(config)]


def child_environment() -> dict[str, str]:
    """This process's environment, with the tunelab that is running now first on PYTHONPATH.

    A child must run the same code as its parent even when the parent found tunelab through a path of
    its own (a test runner, a notebook's sys.path). Unbuffered, so its output arrives as it is written;
    COLUMNS from the terminal, so progress bars fit it although the child writes into a pipe.
    """
    source = str(Path(__file__).resolve().parents[2])  # the folder holding this tunelab package
    paths = [source, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1"}
    with contextlib.suppress(OSError, ValueError, AttributeError):  # not a terminal, or a stream without a file
        if sys.stderr.isatty():
            env.setdefault("COLUMNS", str(os.get_terminal_size(sys.stderr.fileno()).columns))
    return env


def train_in_child(config: TrainConfig) -> Outcome:
    """Train `config` in a child process and wait for it; relay its output; return how it ended.

    KeyboardInterrupt (Ctrl-C) while it trains: the child gets one SIGINT, this waits until it has saved
    and exited, then re-raises. A second Ctrl-C while waiting kills the child (its last committed
    checkpoint stays: commits are atomic).
    """
    started = time.monotonic()
    group = {"process_group": 0} if os.name == "posix" else {}
    child = subprocess.Popen(
        train_command(config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_environment(),
        **group,
    )
    relay = Relay(child.stdout.fileno(), sys.stderr)
    try:
        with passed_on(child, (signal.SIGTERM, signal.SIGHUP) if os.name == "posix" else ()):
            relay.until_closed()
            child.wait()
    except KeyboardInterrupt:
        _stop(child, relay)
        raise
    finally:
        child.stdout.close()
    return Outcome(child.returncode, time.monotonic() - started, failure_reason(child.returncode, relay.tail))


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


@contextlib.contextmanager
def passed_on(child: subprocess.Popen, signals: tuple[signal.Signals, ...]):
    """While the child runs, `signals` sent to this process go to the child; then to this process itself.

    The child has its own process group, so a `kill` of the parent alone would otherwise leave it training
    with nobody waiting for it. Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def pass_on(signum, frame):
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in received[:1]:  # the child has ended by now; this process ends the way it was asked to
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
