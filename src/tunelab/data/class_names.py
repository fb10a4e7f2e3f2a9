"""Names for a text table's integer labels: GLUE-style files label classes 0, 1, ..., K-1 (class_names).

The table reader names a class by its label as written ("0", "1"), which is what predictions and reports
would show. With class_names the label i is the class names[i] everywhere after reading: training,
validation and test examples, the model's metadata, summary.json, reports and predictions. Reading stays as
it is; `name_classes` renames the classes of what it read, so every check of the reader (unknown labels
in a validation file, one number written two ways) still applies to the labels as written.

Only a table whose labels are exactly the integers 0..K-1 can be named this way: a label like "pos", "-1"
or "1.5" means the names are already there or the numbering is another one, and guessing which integer
means which name would silently swap classes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tunelab.data.examples import Examples
from tunelab.errors import DataError, TunelabError, brief

_INTEGER = re.compile(r"0|[1-9][0-9]*")
"""A label 0..K-1 as the reader names it: digits without sign, leading zero or decimal point."""


def numbered(count: int) -> tuple[str, ...]:
    """The classes "0", "1", ..., as a table reader names integer labels: what a named run's files hold."""
    return tuple(str(i) for i in range(count))


def check_class_names(names: Sequence[str], task: str, modality: str) -> None:
    """Refuse class_names where they cannot apply: data that names its classes itself, or a repeated name."""
    if modality == "image":
        raise TunelabError(
            "class_names names the integer labels of a text table; an image folder's subfolders already name "
            "its classes: drop --class-names (rename the folders instead)"
        )
    if task != "text-classification":
        raise TunelabError(
            f"class_names names the integer labels 0..K-1 of a text-classification table; {task} data names "
            "its classes itself: drop --class-names"
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TunelabError(f"class_names lists '{brief(name)}' twice; give each class its own name")
        seen.add(name)


def name_classes(examples: Examples, names: Sequence[str], *, training: bool) -> Examples:
    """`examples` read from a table of integer labels, with label i renamed names[i] (labels renumbered to match).

    Every label must be an integer 0..len(names)-1. Training examples must use every name, since a class
    with no training example can never be learned or validated; a validation or test file may hold some.
    """
    names = tuple(names)
    where = examples.source
    values: dict[str, int] = {}
    for label in examples.classes:
        if not _INTEGER.fullmatch(label):
            raise DataError(
                f"label '{brief(label)}' is not an integer 0..{len(names) - 1}: class_names names integer labels "
                "0, 1, ... in order; drop --class-names to use the labels as written",
                where,
            )
        values[label] = int(label)
    largest = max(values.values(), default=-1)
    if largest >= len(names):
        raise DataError(
            f"labels go up to {largest} but class_names gives {len(names)} name(s) "
            f"({brief(', '.join(names), 120)}); give one name for each label 0..{largest}",
            where,
        )
    if training:
        unused = sorted(set(range(len(names))) - set(values.values()))
        if unused:
            raise DataError(
                f"class_names gives {len(names)} names but no example has label {unused[0]} "
                f"('{brief(names[unused[0]])}'); give one name for each label 0..{largest}",
                where,
            )
    labels = [values[examples.classes[label]] for label in examples.labels]
    return Examples(examples.inputs, labels, names, examples.source)
