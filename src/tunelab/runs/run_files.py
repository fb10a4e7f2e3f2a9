"""A run's own files read back, checked: a damaged or hand-edited file is one line naming the file and the key.

summary.json, checkpoint state.json, metrics.jsonl and the metadata of model.safetensors are written by
tunelab, but they are plain files that a person, a sync tool or a failing disk can change. Every reader of
them goes through here, and gets back only what it can compute with: an object, each known key of the type
tunelab writes (a number where a score is, a list of strings where the classes are), the keys it needs
present. Anything else is a `DataError` naming the file and the key, e.g.

    runs/a/summary.json: 'score' must be a number, found a string; the run is damaged: train it again

Keys a reader does not know are passed through unchecked (a newer tunelab may add some); a file written by a
newer format is refused with "upgrade tunelab" before its keys are looked at.

No torch here: comparisons and reports read run files without loading a model.

May import: errors, fileio.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import DataError, TunelabError
from tunelab.fileio import load_json, read_text

FORMAT_VERSION = 1
"""The version of what a run directory holds; a newer one is refused with 'upgrade tunelab'."""

DAMAGED = "the run is damaged: train it again"
"""The end of every message about a damaged run file: what to do about it."""


@dataclass(frozen=True)
class Kind:
    """The type a key must have, as it is checked and as it is named in a message."""

    name: str
    """How a message names it: 'a number', 'a list of strings'."""
    accepts: Callable[[object], bool]
    """Whether a value read from JSON is of this kind."""


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


NUMBER = Kind("a number", _is_number)
INTEGER = Kind("an integer", _is_integer)
TEXT = Kind("a string", lambda v: isinstance(v, str))
TEXTS = Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
OBJECTS = Kind("a list of objects", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))


def optional(kind: Kind) -> Kind:
    """`kind`, or null."""
    return Kind(f"{kind.name} or null", lambda v: v is None or kind.accepts(v))


SUMMARY = {
    "format_version": INTEGER,
    "model": TEXT,
    "strategy": TEXT,
    "task": TEXT,
    "metric": TEXT,
    "score": NUMBER,
    "best_epoch": INTEGER,
    "epochs": INTEGER,
    "trainable_params": INTEGER,
    "total_params": INTEGER,
    "train_examples": INTEGER,
    "val_examples": INTEGER,
    "classes": TEXTS,
    "cached_blocks": optional(INTEGER),
    "cache_seconds": NUMBER,
    "train_seconds": NUMBER,
    "peak_memory_mb": NUMBER,
    "checkpoint_bytes": INTEGER,
    "processes": INTEGER,
    "metrics_last": optional(OBJECT),
}
"""summary.json's keys as the loop writes them (runs.loop._summary) that readers compute with; the others (and
keys added later) are passed through for their readers to interpret."""

STATE = {
    "epoch": INTEGER,
    "best_score": NUMBER,
    "best_epoch": INTEGER,
    "bad_epochs": INTEGER,
    "metrics": OBJECTS,
    "scheduler": OBJECT,
}
"""A checkpoint's state.json: the loop's Progress plus the scheduler's state (runs.checkpoints)."""

MODEL_META = {"classes": TEXTS, "model": TEXT, "strategy": TEXT, "task": TEXT}
"""The metadata of model.safetensors and trained.safetensors, each value JSON-encoded (runs.trained)."""


def found(value: object) -> str:
    """What a JSON value is, for a message: 'a string', 'null', 'a list'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def check_keys(obj: object, schema: dict[str, Kind], path: Path, required: Iterable[str] = (), what: str = "") -> dict:
    """`obj` checked against `schema`: an object, every known key of its kind, every `required` key present.

    `what` prefixes the key in messages (a metrics line: 'line 3: ...' comes from the caller's DataError).
    """
    if not isinstance(obj, dict):
        raise DataError(f"{what}expected a JSON object, found {found(obj)}; {DAMAGED}", path)
    for key, kind in schema.items():
        if key in obj and not kind.accepts(obj[key]):
            raise DataError(f"{what}'{key}' must be {kind.name}, found {found(obj[key])}; {DAMAGED}", path)
    missing = [key for key in required if key not in obj]
    if missing:
        raise DataError(
            f"{what}lacks {', '.join(missing)}; the run is damaged or from an older tunelab: train it again", path
        )
    return obj


def check_version(version: int, path: Path, where: Path | None = None) -> None:
    """Refuse a file written by a newer format (`where` names it in the message; default `path`)."""
    if version > FORMAT_VERSION:
        raise TunelabError(
            f"{where or path} was written by a newer tunelab (format {version}); upgrade tunelab"
            if where is not None
            else f"{path} was written by a newer tunelab (format {version}, this one reads {FORMAT_VERSION}); "
            "upgrade tunelab"
        )


# ---------------------------------------------------------------- the files


def read_summary(path: Path, required: Iterable[str] = ()) -> dict:
    """summary.json, checked; a newer format is refused naming the run directory."""
    summary = load_json(path)
    if isinstance(summary, dict) and _is_integer(summary.get("format_version")):
        check_version(summary["format_version"], path, where=path.parent)
    return check_keys(summary, SUMMARY, path, required)


def read_state(path: Path) -> dict:
    """A checkpoint's state.json, checked; every key of STATE present (a key added later takes its default)."""
    state = check_keys(load_json(path), STATE, path, required=STATE)
    for i, record in enumerate(state.get("metrics", ()), start=1):
        if "epoch" in record and not _is_integer(record["epoch"]):
            raise DataError(f"'metrics' record {i}: 'epoch' must be an integer; {DAMAGED}", path)
    return state


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl: one object per completed epoch; [] when there is no file yet."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(read_text(path, "metrics file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg}; {DAMAGED}", path, number) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, found {found(record)}; {DAMAGED}", path, number)
        if "epoch" in record and not _is_integer(record["epoch"]):
            raise DataError(f"'epoch' must be an integer, found {found(record['epoch'])}; {DAMAGED}", path, number)
        records.append(record)
    return records


def read_model_meta(meta: dict[str, str], path: Path, required: Iterable[str] = ()) -> dict:
    """The metadata of a model file decoded and checked: 'format_version' an integer written as text (absent:
    0), each known key the JSON of its kind. Unknown keys stay as the strings they are."""
    raw = meta.get("format_version", "0")
    try:
        version = int(raw)
    except ValueError:
        raise DataError(f"metadata 'format_version' must be an integer, found {raw[:20]!r}; {DAMAGED}", path) from None
    check_version(version, path)
    decoded = {}
    for key, value in meta.items():
        if key == "format_version":
            continue
        if key not in MODEL_META:
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"metadata '{key}' is not valid JSON; {DAMAGED}", path) from None
    return check_keys(decoded, MODEL_META, path, required, what="metadata ")
