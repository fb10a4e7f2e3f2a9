"""Unlabelled target-domain examples (--target-data): images, texts or sentences of words, read without labels.

Domain adaptation learns from the target domain's inputs alone, so whatever labels the target data carries
are never read into memory: a class-folder tree is read as one set of images, an idx pair as its images, a
text table as its text column. That the labels were there and are ignored is said once (a note the run
prints), never an error: a user often has the labelled file at hand and wants to see adaptation work
without it. The examples come back as `Examples` with every label 0, so the datasets, collates and
feature cache that read source examples read these unchanged; nothing in training looks at those zeros.

Which form is read follows the model's modality, and a path of the other kind is refused in one line: a
folder for a text model, a file for an image model.

Texts: a .csv, .tsv or .jsonl table with a header, whose text column is found as for training data
(`text_column`, else 'sentence' or 'text'); or a .txt file, read as a tab-separated table when its first
line names the text column, else as one text per non-blank line.

Sentences of words (token classification, `words=True`): a CoNLL column file, read as its first column,
one sentence per blank-line-separated block (`-DOCSTART-` lines skipped); its other columns (the tags,
POS, chunks) are not read, and a note says they are ignored. A file is CoNLL when it ends in .conll or its
first non-blank line looks like CoNLL (`data.conll.looks_like_conll`, as --task auto decides); anything
else is read as texts (above) whose words are split on whitespace, so a plain .txt file is one sentence
per line.

May import: errors, fileio, data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.conll import looks_like_conll
from tunelab.data.examples import Examples
from tunelab.data.idx import find_idx_pair, read_idx
from tunelab.data.images import image_inputs
from tunelab.data.text import _csv_rows, _decode, _jsonl_rows, _pick_text_column, _tsv_rows, read_utf8
from tunelab.errors import DataError, TunelabError, brief

TABLES = {".csv": _csv_rows, ".tsv": _tsv_rows, ".jsonl": _jsonl_rows}
"""Text tables by suffix (a .txt file is a table or plain lines: see the module docstring)."""


@dataclass(frozen=True)
class Unlabelled:
    """Target-domain inputs, and what was left unread about them."""

    inputs: list
    """Image file Paths, HxW uint8 arrays (idx data), text strings, or sentences as lists of words."""
    source: str
    """Where they were read from."""
    notes: tuple[str, ...] = ()
    """One line per thing ignored (a label column, class folder names), for the run to print as a warning."""

    def __len__(self) -> int:
        return len(self.inputs)

    def as_examples(self, classes: tuple[str, ...]) -> Examples:
        """The inputs as `Examples` of the training classes, every label 0 (never read: they are unknown); a
        sentence of words gets a 0 per word, the shape a tagging dataset aligns to its sub-tokens."""
        labels = [[0] * len(x) if isinstance(x, list) else 0 for x in self.inputs]
        return Examples(list(self.inputs), labels, classes, self.source)


def read_unlabelled(
    path: str | Path, modality: str, text_column: str | None = None, label_column: str = "label", words: bool = False
) -> Unlabelled:
    """Read target examples for a model taking `modality` ('image' or 'text') inputs; labels are not kept.

    `label_column` is only looked for to say, in a note, that its labels are ignored. `words`: the task tags
    words (token classification), so each text comes back as its list of words.
    """
    path = Path(path)
    if not path.exists():
        raise TunelabError(f"target_data {path}: no such file or folder")
    if modality == "image":
        if not path.is_dir():
            raise TunelabError(
                f"target_data {path} is a file, but the model takes images: give a folder of images "
                "(a flat folder or a class-folder tree; labels are not used)"
            )
        return _read_images(path)
    if path.is_dir() and words:
        raise TunelabError(
            f"target_data {path} is a folder, but the task tags words: give a CoNLL file (its tags are ignored) "
            "or a .txt file with one sentence per line"
        )
    if path.is_dir():
        raise TunelabError(
            f"target_data {path} is a folder, but the model takes text: give a .csv, .tsv, .jsonl or .txt file "
            "of texts (a label column is ignored)"
        )
    if words:
        return _read_words(path, text_column, label_column)
    return _read_texts(path, text_column, label_column)


def _read_images(folder: Path) -> Unlabelled:
    """Every image below `folder` (recursively, sorted), or the images of an idx pair in it."""
    pair = find_idx_pair(folder, "train") or find_idx_pair(folder, "t10k")
    if pair is not None:
        examples = read_idx(*pair)
        note = f"target_data {folder}: the labels in {pair[1].name} are ignored (domain adaptation reads images only)"
        return Unlabelled(list(examples.inputs), str(folder), (note,))
    found = image_inputs([str(folder)])  # a folder without images is a DataError naming it
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    notes = tuple(found.notes)
    if len(classes) > 1:
        notes += (
            f"target_data {folder}: its {len(classes)} subfolders ({brief(', '.join(classes), 80)}) are read as one "
            "set of unlabelled images; their names are ignored",
        )
    return Unlabelled([Path(p) for p in found.files], str(folder), notes)


def _read_texts(path: Path, text_column: str | None, label_column: str) -> Unlabelled:
    text = _decode(path)  # missing, not UTF-8 or empty: a DataError naming the file
    suffix = path.suffix.lower()
    if suffix == ".txt" and not _names_text_column(text, text_column):
        texts = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
        return Unlabelled(texts, str(path))
    rows = TABLES.get(suffix, _tsv_rows if suffix == ".txt" else None)
    if rows is None:
        raise DataError(f"unsupported file type '{path.suffix}' for target_data; use .csv, .tsv, .jsonl or .txt", path)
    texts, labelled = _table_texts(path, rows(path, text), text_column, label_column)
    notes = ()
    if labelled:
        notes = (
            f"target_data {path}: the labels in column '{brief(label_column)}' are ignored "
            "(domain adaptation reads the texts only; give the labelled target data as --test-data to score it)",
        )
    return Unlabelled(texts, str(path), notes)


def _read_words(path: Path, text_column: str | None, label_column: str) -> Unlabelled:
    """Sentences as word lists: a CoNLL file's first column, else texts split on whitespace (module docstring)."""
    text = read_utf8(path, "a CoNLL file or a .txt file with one sentence per line")  # unreadable: a DataError
    if not text.strip():
        raise DataError("file is empty; expected a CoNLL file (one token per line) or one sentence per line", path)
    if path.suffix.lower() == ".conll" or looks_like_conll(path):
        return _conll_words(path, text)
    texts = _read_texts(path, text_column, label_column)
    return Unlabelled([t.split() for t in texts.inputs if t.split()], texts.source, texts.notes)


def _conll_words(path: Path, text: str) -> Unlabelled:
    """The first column of a CoNLL file, sentence by sentence; the other columns are not read (nor checked)."""
    sentences: list[list[str]] = []
    words: list[str] = []
    columns = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append(words)
            words = []
            continue
        words.append(fields[0])
        columns = max(columns, len(fields))
    if words:
        sentences.append(words)
    if not sentences:
        raise DataError("no sentences: expected one token per line, blank lines between sentences", path)
    notes = ()
    if columns > 1:
        notes = (
            f"target_data {path}: only the token column is read; the other columns (the tags) are ignored "
            "(domain adaptation reads the words only; give the labelled target data as --test-data to score it)",
        )
    return Unlabelled(sentences, str(path), notes)


def _names_text_column(text: str, text_column: str | None) -> bool:
    """Whether a .txt file's first line is a tab-separated header naming the text column."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    names = [name.strip() for name in first.rstrip("\r").split("\t")]
    return text_column in names if text_column is not None else any(n in names for n in ("sentence", "text"))


def _table_texts(
    path: Path, rows: Iterator[tuple[int, dict]], text_column: str | None, label_column: str
) -> tuple[list[str], bool]:
    """The text column of a table, and whether it has a label column (whose values are not read)."""
    first = next(rows, None)
    if first is None:
        raise DataError("file is empty; expected a header row and one text per line", path)
    header_line, header = first
    columns = [str(c) for c in header[""]]
    key = _pick_text_column(path, header_line, columns, text_column)
    texts = []
    for number, record in rows:
        value = record.get(key)
        if not isinstance(value, str):
            raise DataError(f"'{key}' must be a string in every row, found {brief(repr(value), 40)}", path, number)
        texts.append(value)
    if not texts:
        raise DataError("no texts after the header row", path)
    return texts, label_column in columns
