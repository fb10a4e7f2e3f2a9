"""Tasks: what the data means (reader, head, scorer, predictor). The registry maps --task values to them."""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.tasks.base import IGNORE, Task, labelled_positions, task_loss
from tunelab.tasks.classification import ImageClassification, TextClassification
from tunelab.tasks.relation_classification import RelationClassification
from tunelab.tasks.token_classification import TokenClassification

REGISTRY: dict[str, type[Task]] = {
    cls.name: cls for cls in (ImageClassification, TextClassification, TokenClassification, RelationClassification)
}
TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl"}


def get_task(name: str) -> Task:
    """The task for a --task value (not 'auto': resolve that with `infer_task` first)."""
    if name not in REGISTRY:
        raise TunelabError(f"unknown task '{name}'; valid: auto, {', '.join(REGISTRY)}")
    return REGISTRY[name]()


def infer_task(data: str, task: str = "auto") -> str:
    """'auto' -> the task the data's format implies; a clear error when the format does not tell.

    A folder holds images; a file is sniffed by its first non-blank line: SemEval-2010 Task 8 records
    or JSONL with head/tail spans are relations, `-DOCSTART-` or `token ... tag` lines with a BIO tag
    are CoNLL; other .csv/.tsv/.txt/.jsonl files are text tables.
    """
    from tunelab.data.conll import looks_like_conll
    from tunelab.data.relations import looks_like_relations

    if task != "auto":
        get_task(task)
        return task
    path = Path(data)
    if path.is_dir():
        return "image-classification"
    if not path.exists():
        if path.is_symlink():
            raise TunelabError(f"{data}: a symbolic link that leads nowhere (a loop, or its target is gone)")
        raise TunelabError(f"{data}: no such file or folder")
    if looks_like_relations(path):
        return "relation-classification"
    if looks_like_conll(path):
        return "token-classification"
    if path.suffix.lower() in TABLE_SUFFIXES | {".txt"}:
        return "text-classification"
    raise TunelabError(f"{data}: cannot tell the task from this file; give --task ({', '.join(REGISTRY)})")


__all__ = ["IGNORE", "REGISTRY", "Task", "get_task", "infer_task", "labelled_positions", "task_loss"]
