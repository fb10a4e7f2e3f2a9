"""The one error type users see.

Anything a user can get wrong (a model name, a strategy spec, a data file) raises a `TunelabError`; the CLI
prints it as one line and exits with code 2. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


def brief(value: object, limit: int = 60) -> str:
    """User data quoted in a message: at most `limit` characters, on one line (a label may be a megabyte long)."""
    text = " ".join(str(value).split("\n"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TunelabError(Exception):
    """A problem with the user's input: what is wrong and what would be valid."""


class DataError(TunelabError):
    """A problem inside a data file, located by path and (when known) line number."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = "" if path is None else f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
