"""Run files written safely and read with clear errors: atomic writes, JSON and UTF-8 text.

Atomic: a file is written next to its target, synced, then renamed over it, so a crash or a full disk
leaves either the old file or the new one, never half of each; --resume depends on that.
Read: only regular files (`open_regular`), so a named pipe or a device given as a file is refused, not waited on.
A base module like `errors`: every layer (settings reading YAML, runs, reports) may import it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

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

    The file gets the mode an ordinary new file gets under the umask, even when `fill` replaces the temporary
    file with one of its own (safetensors writes its own temporary file, created 0600, and renames it over
    ours).
    """
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = _open_temp(path)
        mode = os.fstat(fd).st_mode & 0o777
        os.close(fd)
        fill(temp)
        if os.stat(temp).st_mode & 0o777 != mode:
            os.chmod(temp, mode)
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


def make_folder(path: str | Path) -> Path:
    """Create a folder (and its parents) if missing; a file-system refusal is an error naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TunelabError(f"cannot create folder {path}: a file of that name is in the way") from None
    except OSError as e:
        raise TunelabError(f"cannot create folder {path}: {_reason(e)}") from e
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """atomic_write for content already in memory."""
    atomic_write(path, lambda temp: temp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """atomic_write_bytes for UTF-8 text (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_json(path: str | Path, obj) -> None:
    """Write `obj` as JSON (sorted keys, indent 2, trailing newline) atomically; stable text diffs well."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(path: str | Path, mode: int) -> DataError:
    """The error for a path whose `st_mode` is not a regular file's: it names what the path is."""
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "a special file")
    return DataError(f"is {kind}, not a regular file; only regular files are read as data", path)


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading in binary mode if it is a regular file (symbolic links followed).

    Only regular files are data: opening a named pipe waits for a writer that may never come, and a device
    such as /dev/zero never ends. So the file is opened without blocking and checked on the open descriptor
    (nothing can swap it between the check and the read); anything else is a DataError naming what it is.
    A folder raises IsADirectoryError and a missing file FileNotFoundError, as `open` would.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket file cannot be opened at all
            with contextlib.suppress(OSError):
                raise not_regular(path, os.stat(path).st_mode) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise not_regular(path, mode)
        if os.name == "posix":
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, limit: int | None = None, what: str = "file") -> bytes:
    """A regular file's bytes (see `open_regular`); with `limit`, a file of more bytes is a DataError unread.

    At most limit + 1 bytes are read, so a file that grows while it is read (or lies about its size) is
    refused too; a small file costs a buffer of its own size, not of the limit's.
    """
    with open_regular(path) as f:
        if limit is None:
            data = f.read()
        else:
            expected = min(os.fstat(f.fileno()).st_size, limit)
            data = f.read(expected + 1)
            if len(data) > expected:  # larger than it said: read on, up to one byte past the limit
                data += f.read(limit + 1 - len(data))
    if limit is not None and len(data) > limit:
        raise DataError(f"larger than {limit:,} bytes, the most read as a {what}; is it the right file?", path)
    return data


def read_text(path: str | Path, what: str = "file", limit: int | None = None) -> str:
    """A UTF-8 text file's content, newlines read as `open` reads them (CRLF and CR become LF).

    A missing, unreadable, non-regular (see `open_regular`) or non-UTF-8 file is an error naming it, and so
    is one over `limit` bytes when a limit is given.
    """
    path = Path(path)
    try:
        data = read_bytes(path, limit, what)
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
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
