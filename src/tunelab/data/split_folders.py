"""A data folder split by role into subfolders: train/, val/ (or validation/, valid/) and test/.

Image data sets are often shipped this way (hymenoptera: train/ and val/; Roboflow exports: train/, valid/
and test/), each subfolder a class-per-folder tree. `train --data hym` trains on hym/train and validates on
hym/val (`training_folders`); `eval --data hym` on the same folder scores one of them (`evaluation_folder`).
Both read the one table of names below, so the two commands agree on what a split folder is.

Which subfolder `eval` scores: test/ when there is one, else the validation folder `train` reads. A test
folder took no part in training or in choosing the best epoch (train reads only train/ and val/), so its
score is the unbiased one; a validation score chose the epoch and is optimistic. The note `eval` prints
names the subfolder used, and the other one can always be passed directly (`--data hym/val`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tunelab.errors import DataError

SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val", "validation", "valid"),
    "test": ("test",),
}
"""Subfolder names by role; for validation the first one present is the one `train` reads."""


def split_subfolders(path: Path) -> dict[str, list[Path]]:
    """The subfolders of `path` named for each role (SPLIT_NAMES order; an empty list for a role not present)."""
    return {role: [path / name for name in names if (path / name).is_dir()] for role, names in SPLIT_NAMES.items()}


def training_folders(path: Path) -> tuple[Path, Path | None] | None:
    """(train/, its validation folder or None) of a split folder; None when `path` has no train/ subfolder.

    With several validation folders the first in SPLIT_NAMES order is read (val/ before validation/).
    """
    found = split_subfolders(path)
    if not found["train"]:
        return None
    return found["train"][0], (found["val"] or [None])[0]


def _names(folders: Sequence[Path]) -> str:
    return " and ".join(f"{p.name}/" for p in folders)


def evaluation_folder(path: Path, classes: Sequence[str]) -> Path | None:
    """The subfolder of split folder `path` to score a model with `classes` on; None when `path` is not a split folder.

    `path` is a split folder when it holds a subfolder named for a role (SPLIT_NAMES) and none of its
    subfolders is named like one of `classes` (a model with a class called 'test' reads a folder of class
    folders as it is). The test folder is chosen when present, else the one validation folder (see the module
    docstring). A folder with no test/ and several validation folders, or with train/ alone, is a DataError
    naming its subfolders: which one to score is then the user's choice.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    found = split_subfolders(path)
    if not any(found.values()):
        return None
    known = set(classes)
    if any(child.is_dir() and child.name in known for child in path.iterdir()):
        return None
    if found["test"]:
        return found["test"][0]
    if len(found["val"]) == 1:
        return found["val"][0]
    present = [p for folders in found.values() for p in folders]
    if found["val"]:
        raise DataError(
            f"a split folder with {_names(found['val'])}: it is not clear which to score; pass one, "
            f"e.g. --data {found['val'][0]}",
            path,
        )
    raise DataError(
        f"a split folder with only {_names(present)}, no val/, validation/, valid/ or test/ to score; pass the "
        f"folder to score, e.g. --data {present[0]}",
        path,
    )
