"""The `tunelab` command: each subcommand parses its flags and calls one library function.

User mistakes (TunelabError) print as one line and exit with code 2; `--debug` shows the traceback. SIGTERM
stops a command the way Ctrl-C does (a run keeps its last epoch for --resume) and exits with 143.

Start-up: `tunelab --help`, `tunelab <command> --help`, `tunelab --version` and flag errors answer in well under
a second, because building the parser reads only torch-free registries and settings (the strategy registry,
the task registry, the settings dataclasses). Each command function imports its implementation when it runs,
so --help never loads torch; `benchmarks/cli_startup.py` measures it and `tests/test_cli.py` checks it.

    __init__.py   `main`: run one command; exit codes, one-line errors, SIGTERM as Ctrl-C
    parser.py     `build_parser`: every command's flags and help texts (torch-free: registries and settings only)
    commands.py   the `cmd_*` functions, one per command, each importing its implementation when it runs

May import: every tunelab subsystem (the top layer); at module level only the torch-free ones.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from tunelab.cli.parser import build_parser
from tunelab.errors import TunelabError

__all__ = ["TERMINATED_EXIT", "Terminated", "build_parser", "main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is: a run tidies up and keeps its last epoch exactly as after Ctrl-C."""


TERMINATED_EXIT = 143
"""The exit code after SIGTERM: 128 + 15, what a shell reports for a process SIGTERM ended, so a supervisor
(systemd, Kubernetes, a batch scheduler) sees the run stopped because it was asked to, not that it failed."""


class _LineTracker:
    """stderr as the commands write it, remembering whether what was written last ended a line.

    Progress bars redraw their line after a carriage return and never end it; an error printed after one must
    start on a line of its own, or `grep '^tunelab: error'` on a log misses it.
    """

    def __init__(self, stream):
        self.stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self.at_line_start = text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def _sigterm_as_interrupt(received: list[int]):
    """Inside the block, SIGTERM raises Terminated (once: a second one while tidying up is only recorded).

    Python's default for SIGTERM is to die on the spot, which skips every cleanup path: a run stopped before
    its first epoch would leave config.yaml and its feature cache behind. As an exception it takes the path
    Ctrl-C takes. Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def terminate(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 for a TunelabError, 130 after Ctrl-C, 143 after SIGTERM.

    Errors are one line on stderr starting with 'tunelab: error: ', at the start of a line; `--debug` shows
    the traceback instead.
    """
    args = build_parser().parse_args(argv)
    stderr = _LineTracker(sys.stderr)
    received: list[int] = []
    with contextlib.redirect_stderr(stderr), _sigterm_as_interrupt(received):
        try:
            args.func(args)
        except (TunelabError, KeyboardInterrupt) as e:
            if args.debug:
                raise
            message = " ".join(str(e).splitlines()) if isinstance(e, TunelabError) else "interrupted"
            newline = "" if stderr.at_line_start else "\n"
            print(f"{newline}tunelab: error: {message}", file=stderr)  # one line, whatever it quotes
            if received:
                return TERMINATED_EXIT
            return 2 if isinstance(e, TunelabError) else 130
    return 0
