"""Tiny NER and relation files in the formats users bring (CoNLL columns, SemEval-2010 Task 8, JSONL)."""

from __future__ import annotations

import json
from pathlib import Path

NER_SENTENCES = [
    ("john visited paris", "B-PER O B-LOC"),
    ("acme corp lives in london", "B-ORG I-ORG O O B-LOC"),
    ("the film is good", "O O O O"),
    ("john works at acme corp", "B-PER O O B-ORG I-ORG"),
    ("paris and london", "B-LOC O B-LOC"),
    ("a person went to the city", "O O O O O O"),
]


def write_conll(path: Path, repeats: int = 2) -> Path:
    """CoNLL-2003 layout (token POS chunk NER, -DOCSTART- paragraphs) in BIO."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(repeats):
        for words, tags in NER_SENTENCES:
            lines += [f"{w} X X {t}" for w, t in zip(words.split(), tags.split())] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


RELATIONS = [
    ("<e1>john</e1> visited <e2>paris</e2> .", "Entity-Destination(e1,e2)"),
    ("the <e2>film</e2> was about the <e1>city</e1>", "Message-Topic(e2,e1)"),
    ("the <e1>actor</e1> and the <e2>film</e2>", "Other"),
    ("<e1>acme</e1> went to <e2>london</e2>", "Entity-Destination(e1,e2)"),
    ("a <e2>story</e2> about a <e1>person</e1>", "Message-Topic(e2,e1)"),
    ("the <e1>plot</e1> or the <e2>movie</e2>", "Other"),
]


def write_semeval(path: Path, repeats: int = 2) -> Path:
    """Four-line SemEval-2010 Task 8 records."""
    records = []
    for i, (sentence, label) in enumerate(RELATIONS * repeats, 1):
        records.append(f'{i}\t"{sentence}"\n{label}\nComment:\n')
    path.write_text("\n".join(records) + "\n")
    return path


def write_relation_jsonl(path: Path) -> Path:
    """The same relations as JSONL with character spans."""
    from tunelab.data.relations import parse_marked

    rows = []
    for sentence, label in RELATIONS * 2:
        r = parse_marked(sentence)
        rows.append(json.dumps({"text": r.text, "head": list(r.head), "tail": list(r.tail), "label": label}))
    path.write_text("\n".join(rows) + "\n")
    return path
