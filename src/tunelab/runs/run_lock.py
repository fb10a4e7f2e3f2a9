"""One process per run directory: an OS lock held for as long as a run trains in it.

Two `tunelab train` processes on the same --out would both write metrics, checkpoints and summary.json
and both report "run saved"; one of the results would be lost without a word. So a run takes an exclusive
`flock` on the file `.tunelab.lock` inside its directory before it looks at what the directory holds, and
keeps it until it has finished or cleaned up; a second process gets one line:

    runs/a is in use by another tunelab process (pid 4242); wait for it to end or choose another --out

The stale-lock rule is the kernel's: a flock belongs to the open file, so it is released when the process
that holds it exits in any way (an error, Ctrl-C, SIGKILL, a crash, the machine going down). A lock file
left behind by a killed process is therefore never "held": the next run locks it at once. The pid written
into it is only for the message. (flock works on local file systems and on NFS, where Linux maps it to a
POSIX byte-range lock; on a system without fcntl, such as Windows, runs are not locked.)

The lock file is removed when the lock is released, so a finished or failed run leaves no trace of it;
only a killed process leaves it (the next run in that directory takes it over). Removing a lock file that
another process may be about to lock is safe because a process that got the lock checks that the file it
locked is still the one at that path, and tries again otherwise.

Only the main process of a multi-process launch locks (the others write nothing in the run directory).

May import: errors, fileio.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from tunelab.errors import TunelabError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

LOCK_NAME = ".tunelab.lock"
"""The lock file inside a run directory (a run file: `runs.rundir.RUN_FILE` matches it)."""


def _reason(e: OSError) -> str:
    return e.strerror or os.strerror(e.errno or 0)


def _make_folder(path: Path) -> bool:
    """Create the run folder (and its parents); True when this call created it, False when it was there."""
    if path.exists() and not path.is_dir():
        raise TunelabError(f"--out {path} is a file; give a folder for the run")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
        return True
    except FileExistsError:
        if not path.is_dir():
            raise TunelabError(f"--out {path} is a file; give a folder for the run") from None
        return False
    except OSError as e:
        raise TunelabError(f"cannot create --out {path}: {_reason(e)}; give a folder you can write to") from None


def _holder(lock: Path) -> str:
    """The pid the holder wrote into the lock file, for the message ('unknown' if it has not written it yet)."""
    try:
        text = lock.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _acquire(folder: Path) -> int:
    """An open file descriptor of the folder's lock file, exclusively locked by this process."""
    lock = folder / LOCK_NAME
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except FileNotFoundError:  # the folder was removed by a run that just failed: make it again
            folder.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                message = f"{lock} is a symbolic link; a run writes only inside its folder: remove the link"
            else:
                message = f"cannot write in --out {folder}: {_reason(e)}; give a folder you can write to"
            raise TunelabError(message) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TunelabError(
                    f"{folder} is in use by another tunelab process ({_holder(lock)}); "
                    "wait for it to end or choose another --out"
                ) from None
            raise TunelabError(f"cannot lock {lock}: {_reason(e)}") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
    raise TunelabError(f"cannot lock {lock}: it keeps being replaced by another process")


def _release(folder: Path, fd: int, created: bool) -> None:
    """Remove the lock file (still holding the lock, so nobody can be holding it next), then unlock."""
    with contextlib.suppress(OSError):
        lock = folder / LOCK_NAME
        if os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False)):
            lock.unlink()
    os.close(fd)
    if created:  # a run that stopped before writing anything leaves no empty folder behind
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def locked_run(folder: Path, main: bool = True) -> Iterator[bool]:
    """Hold the lock on run folder `folder` (created if missing) inside the block; yields whether this call
    created the folder, so a failed start can remove what it made.

    `main=False` (a non-main process of a launch): no lock and no folder created; yields False.
    """
    if not main:
        yield False
        return
    created = _make_folder(folder)
    if fcntl is None:
        yield created
        return
    try:
        fd = _acquire(folder)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        yield created
    finally:
        _release(folder, fd, created)
