"""'--task auto': which task a data path implies, from its format alone.

May import: errors, data (lazily: importing `tunelab.data` loads torch for its datasets), tasks.registry.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.tasks.registry import REGISTRY, task_entry

TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl"}
"""File suffixes read as text tables (besides .txt, which may also be CoNLL or SemEval)."""


def infer_task(data: str, task: str = "auto") -> str:
    """'auto' -> the task the data's format implies; a clear error when the format does not tell.

    A folder holds images; a file is sniffed by its first non-blank line: SemEval-2010 Task 8 records
    or JSONL with head/tail spans are relations, `-DOCSTART-` or `token ... tag` lines with a BIO tag
    are CoNLL; other .csv/.tsv/.txt/.jsonl files are text tables.
    """
    if task != "auto":
        task_entry(task)
        return task
    path = Path(data)
    if path.is_dir():
        return "image-classification"
    if not path.exists():
        if path.is_symlink():
            raise TunelabError(f"{data}: a symbolic link that leads nowhere (a loop, or its target is gone)")
        raise TunelabError(f"{data}: no such file or folder")
    from tunelab.data.conll import looks_like_conll  # lazy: tunelab.data imports torch
    from tunelab.data.relations import looks_like_relations

    if looks_like_relations(path):
        return "relation-classification"
    if looks_like_conll(path):
        return "token-classification"
    if path.suffix.lower() in TABLE_SUFFIXES | {".txt"}:
        return "text-classification"
    raise TunelabError(f"{data}: cannot tell the task from this file; give --task ({', '.join(REGISTRY)})")
