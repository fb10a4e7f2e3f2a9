"""Relation classification data: the SemEval-2010 Task 8 file format and JSON Lines with character spans.

SemEval-2010 Task 8 records are four lines: `ID<TAB>"sentence with <e1>..</e1> and <e2>..</e2>"`, the
relation (e.g. `Component-Whole(e2,e1)` or `Other`), a `Comment:` line, and a blank line. The sentence
sits inside double quotes that are not escaped inside it, so the outer quotes are stripped rather than
parsed. JSON Lines records are `{"text": ..., "head": [start, end], "tail": [start, end], "label": ...}`
(spans as Python slices: end exclusive; `{"start": s, "end": e}` works too). Either way an example
becomes a `Relation`: the plain text and the two spans, so the model side decides how to mark them.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.examples import Examples
from tunelab.data.text import read_utf8
from tunelab.errors import DataError, TunelabError
from tunelab.fileio import open_regular

SEMEVAL_LINE = re.compile(r'(\d+)\t"(.*)"\s*')
TAGS = re.compile(r"</?e[12]>")


@dataclass(frozen=True)
class Relation:
    """A sentence and the character spans of its two entities (end exclusive)."""

    text: str
    """The sentence without any markup."""
    head: tuple[int, int]
    """Span of the first entity (SemEval's e1)."""
    tail: tuple[int, int]
    """Span of the second entity (SemEval's e2)."""


def check_spans(text: str, head: tuple[int, int], tail: tuple[int, int]) -> None:
    """Raise TunelabError unless both spans are non-empty slices of `text` that do not overlap."""
    for name, (start, end) in (("head", head), ("tail", tail)):
        if not 0 <= start < end <= len(text):
            raise TunelabError(
                f"{name} span [{start}, {end}) is not a non-empty span of the {len(text)}-character text"
            )
    if head[0] < tail[1] and tail[0] < head[1]:
        raise TunelabError(f"head span {list(head)} and tail span {list(tail)} overlap")


def parse_marked(marked: str) -> Relation:
    """'a <e1>b</e1> c <e2>d</e2>' -> Relation('a b c d', (2, 3), (6, 7)); each tag exactly once, in order."""
    clean: list[str] = []
    found: dict[str, int] = {}
    position, length = 0, 0
    for match in TAGS.finditer(marked):
        piece = marked[position : match.start()]
        clean.append(piece)
        length += len(piece)
        tag = match.group()
        if tag in found:
            raise TunelabError(f"{tag} appears twice")
        found[tag] = length
        position = match.end()
    clean.append(marked[position:])
    for entity in ("e1", "e2"):
        if f"<{entity}>" not in found or f"</{entity}>" not in found:
            raise TunelabError(f"the sentence is missing an entity: it needs <{entity}>...</{entity}>")
        if found[f"</{entity}>"] <= found[f"<{entity}>"]:
            raise TunelabError(f"<{entity}>...</{entity}> must enclose some text, opening tag first")
    text = "".join(clean)
    relation = Relation(text, (found["<e1>"], found["</e1>"]), (found["<e2>"], found["</e2>"]))
    check_spans(relation.text, relation.head, relation.tail)
    return relation


def _span(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, dict) and set(value) >= {"start", "end"}:
        value = [value["start"], value["end"]]
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return value[0], value[1]
    raise TunelabError(
        f'\'{name}\' must be a [start, end] pair of integers (or {{"start": s, "end": e}}), '
        f"found {json.dumps(value)[:40]}"
    )


def parse_record(record: object) -> tuple[Relation, str | None]:
    """A JSON object with text, head, tail (and optionally label) -> (Relation, label or None)."""
    if not isinstance(record, dict):
        raise TunelabError(f"expected a JSON object, found {type(record).__name__}")
    missing = [k for k in ("text", "head", "tail") if k not in record]
    if missing:
        raise TunelabError(f"the record is missing {', '.join(missing)}: a relation needs text, head and tail spans")
    text = record["text"]
    if not isinstance(text, str):
        raise TunelabError(f"'text' must be a string, found {json.dumps(text)[:40]}")
    relation = Relation(text, _span(record["head"], "head"), _span(record["tail"], "tail"))
    check_spans(relation.text, relation.head, relation.tail)
    label = record.get("label")
    if label is not None and not (isinstance(label, str) and label.strip()):
        raise TunelabError(f"'label' must be a non-empty string, found {json.dumps(label)[:40]}")
    return relation, None if label is None else label.strip()


def _semeval_records(path: Path, text: str) -> list[tuple[Relation, str, int]]:
    records: list[tuple[Relation, str, int]] = []
    pending: tuple[Relation, int] | None = None  # a sentence waiting for its relation line
    after_label = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if pending is not None:
                raise DataError(
                    "expected the relation label on the line after the sentence, found a blank line", path, number
                )
            after_label = False
            continue
        if pending is not None:
            records.append((pending[0], line.strip(), number))  # a label problem is reported at the label's line
            pending, after_label = None, True
            continue
        if after_label and line.startswith("Comment"):
            after_label = False
            continue
        match = SEMEVAL_LINE.fullmatch(line)
        if match is None:
            raise DataError(
                f'expected ID<TAB>"sentence with <e1>..</e1> and <e2>..</e2>", found {line[:60]!r}', path, number
            )
        try:
            pending = (parse_marked(match.group(2)), number)
        except TunelabError as e:
            raise DataError(str(e), path, number) from None
        after_label = False
    if pending is not None:
        raise DataError("the file ends after a sentence without its relation label", path, pending[1])
    return records


def _jsonl_records(path: Path, text: str) -> list[tuple[Relation, str, int]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            relation, label = parse_record(json.loads(line))
        except (ValueError, RecursionError) as e:
            raise DataError(f"invalid JSON: {e}; write one JSON object per line", path, number) from None
        except TunelabError as e:
            raise DataError(str(e), path, number) from None
        if label is None:
            raise DataError("the record has no 'label'", path, number)
        records.append((relation, label, number))
    return records


def read_relations(path: Path, classes: Sequence[str] | None = None) -> Examples:
    """A SemEval-2010 Task 8 file (any suffix but .jsonl) or a JSONL file as Examples of `Relation`s.

    Classes are the sorted labels of the file unless `classes` (the training set's) is given, in which
    case a label outside it is an error at its line.
    """
    path = Path(path)
    text = read_utf8(path, "a SemEval-2010 Task 8 file or a JSONL file with head and tail spans")
    records = (_jsonl_records if path.suffix.lower() == ".jsonl" else _semeval_records)(path, text)
    if not records:
        raise DataError("no relation examples in the file", path)
    order = tuple(sorted({label for _, label, _ in records})) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(order)}
    for _, label, number in records:
        if label not in index:
            raise DataError(f"relation '{label}' was not seen in training; known: {', '.join(order)}", path, number)
    return Examples([r for r, _, _ in records], [index[label] for _, label, _ in records], order, str(path))


def looks_like_relations(path: Path) -> bool:
    """True for a SemEval-style first line (ID, tab, quoted sentence with <e1>) or a JSONL record with head and tail."""
    try:
        with io.TextIOWrapper(open_regular(path), encoding="utf-8-sig", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                if SEMEVAL_LINE.fullmatch(line.rstrip("\n")):
                    return "<e1>" in line
                try:
                    record = json.loads(line)
                except ValueError:
                    return False
                return isinstance(record, dict) and "head" in record and "tail" in record
    except OSError:
        return False
    return False
