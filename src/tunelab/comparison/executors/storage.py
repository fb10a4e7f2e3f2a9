"""Can the runs write --out? Checked before anything trains, here and, under Ray, on every node.

A run that cannot write its folder fails at its start, so without this check a compare into a read-only or
mistyped --out starts (and fails) every run of the grid one by one. On a cluster there is a second way to
fail: --out exists where the compare runs but not on the nodes (a local disk, not shared storage); each
run would then write its folder onto the disk of whichever node ran it, and the report would find nothing.
So `shared_folder` leaves a marker file in --out, and a probe on every node (`check_on_node`) must see it
and write next to it.

Both leave the disk as they found it: folders they had to create are removed again (the runs create them).

May import: errors, fileio (and the standard library); `check_on_node` runs on a Ray worker: standard library.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

from tunelab.errors import TunelabError

PROBE_PREFIX = ".tunelab-probe-"
"""The name of the files the checks write into --out and remove again."""


def check_writable(out: Path) -> None:
    """Raise TunelabError (one line) unless this process can create --out and write a file in it."""
    with _created(out, "--out"):
        probe = out / f"{PROBE_PREFIX}{secrets.token_hex(6)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise TunelabError(f"cannot write --out {out}: {e.strerror or e}; give a folder you can write to") from None


@contextlib.contextmanager
def shared_folder(out: Path) -> Iterator[str]:
    """Inside: --out exists and holds a marker file, whose name this yields for `check_on_node`."""
    with _created(out, "--out"):
        marker = out / f"{PROBE_PREFIX}{secrets.token_hex(6)}"
        marker.write_bytes(b"")
        try:
            yield marker.name
        finally:
            marker.unlink(missing_ok=True)


def check_on_node(out: str, marker: str, cwd: str) -> str:
    """On a Ray node: '' when this node sees --out (the marker), can write in it and has `cwd`; else the problem.

    Plain text in, plain text out, standard library only: it runs in a Ray worker before anything is trained.
    """
    node = socket.gethostname()
    if not (Path(out) / marker).is_file():
        return (
            f"node {node} does not see --out {out} as this machine does (no shared storage there): put --out on "
            "storage every node mounts at the same path"
        )
    probe = Path(out) / f"{marker}-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return f"node {node} cannot write --out {out}: {e.strerror or e}"
    if not Path(cwd).is_dir():
        return f"node {node} does not have {cwd}, the folder the compare runs in (relative paths are read there)"
    return ""


@contextlib.contextmanager
def _created(folder: Path, name: str) -> Iterator[None]:
    """Create `folder` (and missing parents) for the block, then remove again the ones created here."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove(missing)
        why = e.strerror or str(e)
        raise TunelabError(f"cannot create {name} {folder}: {why}; give a folder you can write to") from None
    try:
        yield
    finally:
        _remove(missing)


def _remove(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            os.rmdir(folder)
