"""CoNLL column files for named-entity recognition: one token per line, the tag in the last column.

`-DOCSTART-` lines are document separators, blank (or whitespace-only, as in WNUT-17) lines end a
sentence. Tags may be IOB1 (the CoNLL-2003 release: `I-X` opens an entity, `B-X` only separates two
adjacent entities of one type) or IOB2/BIO (every entity opens with `B-X`); both are normalised to BIO
with one rule that leaves valid BIO unchanged: an `I-X` that does not continue an `X` entity becomes
`B-X`. Every line keeps its number, so a bad tag or a ragged line is reported where it is.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

from tunelab.data.examples import Examples
from tunelab.data.text import read_utf8
from tunelab.errors import DataError
from tunelab.fileio import open_regular

TAG = re.compile(r"O|[BI]-\S+")
"""A tag of the BIO family: O, B-<type> or I-<type>."""


def to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 or BIO tags -> BIO: an I-X that does not continue an X entity opens one (B-X)."""
    out: list[str] = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and (i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def tag_order(types: set[str]) -> tuple[str, ...]:
    """The class list for a set of entity types: O first, then B-/I- per type in sorted order."""
    return ("O", *(f"{prefix}-{t}" for t in sorted(types) for prefix in ("B", "I")))


def read_conll_sentences(path: Path) -> list[tuple[list[str], list[str], list[int]]]:
    """(words, BIO tags, line numbers) per sentence, checked: same column count on every line, BIO-family tags."""
    path = Path(path)
    sentences: list[tuple[list[str], list[str], list[int]]] = []
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    columns: int | None = None

    def flush() -> None:
        if words:
            sentences.append((list(words), to_bio(tags), list(lines)))
        words.clear()
        tags.clear()
        lines.clear()

    for number, line in enumerate(read_utf8(path, "a CoNLL column file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            flush()
            continue
        if columns is None:
            if len(fields) < 2:
                raise DataError(
                    f"expected a token and its tag (at least 2 columns), found {len(fields)}: {line.strip()[:60]!r}",
                    path,
                    number,
                )
            columns = len(fields)
        if len(fields) != columns:
            raise DataError(
                f"expected {columns} columns like the first token line (token ... tag), found {len(fields)}: "
                f"{line.strip()[:60]!r}",
                path,
                number,
            )
        tag = fields[-1]
        if not TAG.fullmatch(tag):
            raise DataError(f"tag {tag!r} is not in the IOB/BIO scheme (O, B-<type>, I-<type>)", path, number)
        words.append(fields[0])
        tags.append(tag)
        lines.append(number)
    flush()
    if not sentences:
        raise DataError(
            "no sentences: expected one 'token ... tag' line per token, blank lines between sentences", path
        )
    return sentences


def read_conll(path: Path, classes: Sequence[str] | None = None) -> Examples:
    """A CoNLL file as Examples: inputs are word lists, labels are lists of BIO tag indices.

    Without `classes` the tag set is O plus B-/I- of every entity type in the file; with `classes`
    (the training set's), an entity type the training data never had is an error at its line.
    """
    sentences = read_conll_sentences(Path(path))
    if classes is None:
        classes = tag_order({t[2:] for _, tags, _ in sentences for t in tags if t != "O"})
    index = {tag: i for i, tag in enumerate(classes)}
    labels = []
    for _, tags, lines in sentences:
        for tag, number in zip(tags, lines):
            if tag not in index:
                raise DataError(
                    f"entity type of tag {tag!r} was not seen in training; known tags: {', '.join(classes)}",
                    path,
                    number,
                )
        labels.append([index[t] for t in tags])
    return Examples([words for words, _, _ in sentences], labels, tuple(classes), str(path))


def looks_like_conll(path: Path) -> bool:
    """True when the first non-blank line is -DOCSTART- or 'token ... tag' with a BIO-family tag (no header)."""
    try:
        with io.TextIOWrapper(open_regular(path), encoding="utf-8-sig", errors="replace") as f:
            for line in f:
                fields = line.split()
                if fields:
                    return fields[0] == "-DOCSTART-" or (len(fields) >= 2 and bool(TAG.fullmatch(fields[-1])))
    except OSError:
        return False
    return False
