"""Run files written safely and read with clear errors: atomic writes, JSON and UTF-8 text.

Atomic: a file is written next to its target, synced, then renamed over it, so a crash or a full disk
leaves either the old file or the new one, never half of each; --resume depends on that.
A base module like `errors`: every layer (settings reading YAML, runs, reports) may import it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from tunelab.errors import DataError, TunelabError


def _reason(e: OSError) -> str:
    return e.strerror or (os.strerror(e.errno) if e.errno else str(e))


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, created with mode 0o666 so the umask applies as for an ordinary file."""
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX; elsewhere directories cannot be opened for fsync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Replace `path` all at once with what `fill(temporary_path)` writes: readers and crashes see the old
    content or the new, never a mix.

    `fill` writes a file by name, so large content (a 200 MB optimizer state) can stream to disk instead of
    first being built as one bytes object in memory. Creates missing parent directories. On failure the
    temporary file is removed and the old file is untouched.
    """
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = _open_temp(path)
        os.close(fd)
        fill(temp)
        fd = os.open(temp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        temp = None
    except BaseException as e:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        if isinstance(e, OSError):
            raise TunelabError(f"cannot write {path}: {_reason(e)}; nothing was overwritten") from e
        raise
    try:
        _sync_directory(path.parent)
    except OSError as e:
        raise TunelabError(f"wrote {path} but could not sync its directory to disk: {_reason(e)}") from e


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """atomic_write for content already in memory."""
    atomic_write(path, lambda temp: temp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """atomic_write_bytes for UTF-8 text (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_json(path: str | Path, obj) -> None:
    """Write `obj` as JSON (sorted keys, indent 2, trailing newline) atomically; stable text diffs well."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a missing, unreadable or non-UTF-8 file is an error naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunelabError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TunelabError(f"{what} {path} is a directory, not a file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from None
    except OSError as e:
        raise TunelabError(f"cannot read {what} {path}: {_reason(e)}") from None


def load_json(path: str | Path):
    """Read a JSON file; a missing or malformed file is a TunelabError naming it (and the line)."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path, e.lineno) from None
