"""Tasks: what the data means (reader, head, collate, scorer, predictor), one file per task, and their registry.

The registry holds light entries (`TaskEntry`: name, modality, summary, one label per input or not, and
where the class lives); a task's module, which imports torch, is loaded by the first `get_task`. So
importing this package loads no torch, and the CLI, settings and advise can list and check tasks cheaply.
Adding a task = one file with a `tasks.base.Task` subclass + one `register_task` line below.
Heavy names (`Task`, `task_loss`, `IGNORE`, `labelled_positions`) are imported from `tunelab.tasks.base`.

May import: errors, models, data, strategies.
"""

from __future__ import annotations

from tunelab.tasks.infer import infer_task
from tunelab.tasks.registry import (
    REGISTRY,
    TaskEntry,
    check_modality,
    get_task,
    register_task,
    registered_task,
    single_label_tasks,
    task_class,
    task_entry,
    task_names,
    unregister_task,
)

# The built-in tasks, in the order users see them in.
register_task(
    TaskEntry(
        "image-classification",
        "image",
        "one label per image: a folder with a subfolder per class",
        "tunelab.tasks.classification:ImageClassification",
        single_label=True,
    )
)
register_task(
    TaskEntry(
        "text-classification",
        "text",
        "one label per text: a .csv, .tsv, .jsonl or .txt table",
        "tunelab.tasks.classification:TextClassification",
        single_label=True,
    )
)
register_task(
    TaskEntry(
        "token-classification",
        "text",
        "a tag per word (named entities): CoNLL files, entity F1",
        "tunelab.tasks.token_classification:TokenClassification",
        single_label=False,
    )
)
register_task(
    TaskEntry(
        "relation-classification",
        "text",
        "the relation between two marked entities: SemEval-2010 Task 8 or JSONL spans",
        "tunelab.tasks.relation_classification:RelationClassification",
        single_label=False,
    )
)

__all__ = [
    "REGISTRY",
    "TaskEntry",
    "get_task",
    "infer_task",
    "register_task",
    "registered_task",
    "single_label_tasks",
    "task_class",
    "check_modality",
    "task_entry",
    "task_names",
    "unregister_task",
]
