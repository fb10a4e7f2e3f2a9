"""Ctrl-C, SIGTERM and SIGHUP held back for a few lines that must not be cut in half.

A stop request becomes an exception at whatever line the main thread is running (`cli._sigterm_as_interrupt`,
Python's own KeyboardInterrupt). Between pointing checkpoint/latest at a new epoch and deleting the epoch
before it, that exception would leave two epoch folders, or a finished folder that nothing points at.
Inside `held_signals` a stop signal is only recorded; when the block ends the handlers that were in place
are back and each recorded signal is raised again, so the stop still happens, a few milliseconds later and
after the commit.

Why not a signal mask: `pthread_sigmask` holds a signal for one thread, and the kernel hands a signal sent
to the process (kill, Ctrl-C to the process group) to any thread that does not block it; torch's worker
threads do not. Python runs its handlers in the main thread whichever thread received the signal, so
swapping the handlers holds the signal for the whole process.

May import: nothing of tunelab.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def held_signals() -> Iterator[None]:
    """Inside the block the stop signals are recorded, not acted on; at its end each is raised once more, for
    the handler that was in place before. An ignored signal stays ignored. Only the main thread can change
    handlers: elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum, frame) -> None:
        if signum not in pending:
            pending.append(signum)

    previous = {}
    for sig in HELD:
        handler = signal.getsignal(sig)
        if handler is not None and handler != signal.SIG_IGN:  # None: a handler not set from Python, left alone
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:
            signal.raise_signal(sig)
