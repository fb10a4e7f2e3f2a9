"""Labelled text tables: CSV, TSV (GLUE style) and JSON Lines, with errors that point at the line.

TSV is split on tabs with no quote handling, because GLUE files (SST-2 among them) contain bare `"`
and `''` tokens that a CSV parser would swallow; CSV goes through the `csv` module, which does handle
quoting. Text is kept exactly as written (SST-2 sentences end with a space) apart from the line ending.

Labels are class names. In CSV and TSV they are text as written; JSON Lines labels are strings, numbers
or booleans, one type per file (mixing 1 and "1" is refused, naming both lines, since it usually means
two writers disagreed), and a number is named by its value: 1 and 1.0 are the same class "1", because
JSON has one number type and writers such as pandas print integers in a float column as 1.0. Two
spellings of one number as text ("1" and "1.0" in a CSV) are refused rather than made two classes.

`clip_text` and `clip_words` bound the characters handed to a tokenizer, which builds every token of its
input before truncating to max_length: a 10 MB line would cost gigabytes to keep 128 tokens.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from tunelab.data.examples import Examples, Splits
from tunelab.data.splits import split_examples
from tunelab.errors import DataError, brief
from tunelab.fileio import open_regular

TEXT_COLUMNS = ("sentence", "text")
"""Column names tried, in order, when no text column is named (GLUE uses 'sentence')."""

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl"}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")

Row = tuple[int, dict[str, object]]
"""A record and the 1-based line it starts on."""

CHARS_PER_TOKEN = 100
"""Characters kept per token of max_length before tokenising (see `clip_text`).

100 is WordPiece's longest word (a longer one becomes a single [UNK]), and byte-level BPE tokens are
shorter still, so the first max_length tokens end before max_length x 100 characters unless the text is
mostly runs of whitespace: cutting there keeps what truncation to max_length keeps, at a bounded cost
(64 tokens: 6,400 characters, about a megabyte of tokenizer memory, whatever the line's length)."""


def clip_text(text: str, max_tokens: int) -> str:
    """`text` cut to `max_tokens` x CHARS_PER_TOKEN characters: what a tokenizer truncating to `max_tokens` needs."""
    return text[: max_tokens * CHARS_PER_TOKEN]


def clip_words(words: list[str], max_tokens: int) -> list[str]:
    """A pre-split sentence under the same bound as `clip_text`: leading words (each cut to the budget) whose
    characters, one separator each, fit in `max_tokens` x CHARS_PER_TOKEN. Words left out are words that
    truncation would have cut; the kept ones keep their indices."""
    budget = max_tokens * CHARS_PER_TOKEN
    kept: list[str] = []
    for word in words:
        if budget <= 0:
            break
        kept.append(word[:budget])
        budget -= len(word) + 1
    return kept


def read_utf8(path: Path, expected: str) -> str:
    """A data file as text (BOM dropped); missing, unreadable or non-UTF-8 bytes are a DataError naming the line.

    `expected` says what to pass instead when the path is a folder, e.g. "a CoNLL column file".
    """
    try:
        with open_regular(path) as f:  # a named pipe or a device is refused, not waited on
            data = f.read()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except IsADirectoryError:
        raise DataError(f"is a folder; pass {expected}", path) from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc}", path) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"bytes {data[exc.start : exc.end]!r} are not UTF-8; save the file as UTF-8", path, line
        ) from None


def _decode(path: Path) -> str:
    """A text table as text; an empty one is an error too."""
    text = read_utf8(path, "a .csv, .tsv, .txt or .jsonl file")
    if not text.strip():
        raise DataError("file is empty; expected a header row and one example per line", path)
    return text


def _check_line_ends(path: Path, text: str) -> None:
    """TSV and JSON Lines end lines with LF (or CRLF); a file of CR-only lines would read as one long line."""
    if "\r" in text.rstrip("\r") and "\n" not in text:
        raise DataError("lines end with CR only (old Mac format); convert the line endings to LF", path)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers, without the LF or CRLF that ends them."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            yield number, line


def _header(path: Path, line: int, names: list[str]) -> list[str]:
    names = [n.strip() for n in names]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DataError(f"column '{brief(name)}' appears twice in the header; rename one", path, line)
    return names


def _tsv_rows(path: Path, text: str) -> Iterator[Row]:
    _check_line_ends(path, text)
    lines = _lines(text)
    first = next(lines, None)
    if first is None:
        return
    columns = _header(path, first[0], first[1].split("\t"))
    yield first[0], {"": columns}
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != len(columns):
            raise DataError(
                f"expected {len(columns)} tab-separated fields ({brief(', '.join(columns), 200)}), "
                f"found {len(fields)}; "
                "a text containing a tab must be written as CSV or JSON Lines instead",
                path,
                number,
            )
        yield number, dict(zip(columns, fields))


def _csv_rows(path: Path, text: str) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    columns: list[str] | None = None
    start = 1
    # The csv module refuses fields over 128 KiB by default; a field can be as long as the file it is in.
    # The limit is process-wide, so it is raised only while this file is read.
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields or fields == [""]:
                continue
            if columns is None:
                columns = _header(path, line, fields)
                yield line, {"": columns}
            elif len(fields) != len(columns):
                raise DataError(
                    f"expected {len(columns)} comma-separated fields ({brief(', '.join(columns), 200)}), found "
                    f"{len(fields)}; quote fields that contain commas",
                    path,
                    line,
                )
            else:
                yield line, dict(zip(columns, fields))
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path, start) from exc
    finally:
        csv.field_size_limit(limit)


def _jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    _check_line_ends(path, text)
    columns: list[str] | None = None
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise DataError(f"invalid JSON: {exc}; write one JSON object per line", path, number) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, found {type(record).__name__}", path, number)
        if columns is None:
            columns = list(record)
            yield number, {"": columns}
        yield number, record


def _pick_text_column(path: Path, line: int, columns: list[str], text_column: str | None) -> str:
    if text_column is not None:
        if text_column not in columns:
            raise DataError(
                f"no column '{brief(text_column)}'; columns are: {brief(', '.join(columns), 200)}", path, line
            )
        return text_column
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    raise DataError(
        f"no text column: expected one named {' or '.join(map(repr, TEXT_COLUMNS))}; columns are: "
        f"{brief(', '.join(columns), 200)}. Pass text_column= to choose one (the first line must be a header)",
        path,
        line,
    )


_LABEL_TYPES = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}
"""JSON label types as an error names them; an integer and a float are one JSON type, a number."""


class _LabelReader:
    """Turns the label field of each record into a class name, checking that a file uses one JSON type."""

    def __init__(self, path: Path):
        self.path = path
        self.first: tuple[str, int, object] | None = None  # (type name, line, value) of the first label

    def __call__(self, value: object, line: int) -> str:
        """A label's class name: strings trimmed, numbers by value (1.0 is "1"), booleans as true / false."""
        kind = _LABEL_TYPES.get(type(value))
        if kind is None:  # null, a list or an object: no label
            return ""
        if self.first is None:
            self.first = (kind, line, value)
        elif kind != self.first[0]:
            first_kind, first_line, first_value = self.first
            raise DataError(
                f"label {brief(json.dumps(value))} is {kind} but the label on line {first_line} "
                f"({brief(json.dumps(first_value))}) is {first_kind}; write every label as one JSON type "
                '(all strings such as "1", or all numbers such as 1)',
                self.path,
                line,
            )
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DataError(f"label {json.dumps(value)} is not a finite number", self.path, line)
            if value.is_integer():
                return str(int(value))
        return json.dumps(value)


def _check_spellings(path: Path, names: list[str], lines: list[int]) -> None:
    """Refuse one number written two ways ('1' and '1.0' or '+1'): they would be two classes.

    Leading zeros alone ('01' and '1') are let through as two classes: codes are written that way.
    """
    if not names or not all(_NUMBER.fullmatch(x) for x in set(names)):
        return
    seen: dict[float, tuple[str, int]] = {}
    for name, line in zip(names, lines):
        first = seen.setdefault(float(name), (name, line))
        if first[0] != name and any("." in x or x[0] in "+-" for x in (name, first[0])):
            raise DataError(
                f"label '{brief(name)}' and label '{brief(first[0])}' on line {first[1]} are one number written two "
                "ways, which would make two classes; write each class one way",
                path,
                line,
            )


def _class_order(labels: set[str]) -> tuple[str, ...]:
    """Sorted class names; numerically when every label is a number, so '10' comes after '9'."""
    if labels and all(_NUMBER.fullmatch(x) for x in labels):
        return tuple(sorted(labels, key=lambda x: (float(x), x)))
    return tuple(sorted(labels))


def read_text_table(
    path: Path,
    text_column: str | None = None,
    label_column: str = "label",
    classes: Sequence[str] | None = None,
) -> Examples:
    """Read labelled texts from a .csv, .tsv/.txt (tab-separated, no quoting) or .jsonl file.

    CSV and TSV need a header row. The text column defaults to the first of 'sentence', 'text' present.
    Labels are class names: text as written (trimmed), JSON numbers by value (see the module docstring);
    classes are sorted, numerically if all labels are numbers, unless `classes` is given (e.g. the
    training set's), in which case an unknown label is an error. TSV and JSONL files with CR-only line
    endings are refused with a message saying so.
    """
    path = Path(path)
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"unsupported file type '{path.suffix}'; use .csv, .tsv, .txt or .jsonl", path)
    text = _decode(path)
    rows = {"csv": _csv_rows, "tsv": _tsv_rows, "jsonl": _jsonl_rows}[kind](path, text)
    first = next(rows, None)
    if first is None:
        raise DataError("file is empty; expected a header row and one example per line", path)
    header_line, header = first
    columns = [str(c) for c in header[""]]  # type: ignore[union-attr]
    text_key = _pick_text_column(path, header_line, columns, text_column)
    if label_column not in columns:
        raise DataError(
            f"no label column '{brief(label_column)}'; columns are: {brief(', '.join(columns), 200)}", path, header_line
        )
    texts: list[str] = []
    names: list[str] = []
    lines: list[int] = []
    label_of = _LabelReader(path)
    for number, record in rows:
        if text_key not in record:
            raise DataError(
                f"no field '{text_key}' in this record; fields are: {brief(', '.join(map(str, record)), 200)}",
                path,
                number,
            )
        value = record[text_key]
        if not isinstance(value, str):
            raise DataError(f"'{text_key}' must be a string, found {json.dumps(value)[:40]}", path, number)
        label = label_of(record.get(label_column), number)
        if not label:
            raise DataError(f"missing or empty label in column '{label_column}'; every row needs one", path, number)
        texts.append(value)
        names.append(label)
        lines.append(number)
    if not texts:
        raise DataError("no examples after the header row", path)
    _check_spellings(path, names, lines)
    order = _class_order(set(names)) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(order)}
    for name, number in zip(names, lines):
        if name not in index:
            raise DataError(
                f"label '{brief(name)}' not seen in training; known: {brief(', '.join(order), 200)}", path, number
            )
    return Examples(texts, [index[name] for name in names], order, str(path))


def load_text(
    path: Path,
    val_path: Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    text_column: str | None = None,
    label_column: str = "label",
) -> Splits:
    """Load a text classification data set as train/val splits.

    With `val_path`, that file is the validation set and its labels must be training classes; without,
    the training file is split stratified by `val_fraction` (every class needs at least two examples).
    """
    train = read_text_table(path, text_column, label_column)
    if val_path is None:
        return split_examples(train, val_fraction, seed)
    val = read_text_table(val_path, text_column, label_column, classes=train.classes)
    return Splits(train, val)
