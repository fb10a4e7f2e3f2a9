"""Classification metrics in pure numpy: accuracy, macro-F1, per-class scores, confusion matrix, top-k.

Strategies are compared side by side on small, often unbalanced data sets, so accuracy alone hides a
model that ignores a rare class; macro-F1 and the per-class table show it. Everything is computed from
one confusion matrix so the numbers in a report always agree with each other, and no division ever
warns: a score whose denominator is zero is reported as 0 (the convention sklearn's `zero_division=0` uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.errors import TunelabError

NAME_WIDTH = 12
"""Class names longer than this are cut in the text report so columns stay narrow."""
MAX_MATRIX_CLASSES = 20
"""Beyond this many classes the text confusion matrix shows only the most frequent ones."""


@dataclass(frozen=True)
class ClassReport:
    """Scores for one class, treating it as the positive class against all others."""

    name: str
    """The class name, as given in `classes`."""
    precision: float
    """Of the examples predicted as this class, the fraction that truly are; 0 if none were predicted."""
    recall: float
    """Of the examples truly of this class, the fraction predicted as it; 0 if there are none."""
    f1: float
    """Harmonic mean of precision and recall, 2tp / (2tp + fp + fn); 0 if the class never occurs."""
    support: int
    """Number of examples whose true label is this class."""


@dataclass(frozen=True)
class ClassificationReport:
    """Everything measured on one evaluation set, ready to print or save as JSON."""

    accuracy: float
    """Fraction of examples predicted correctly; 0 for an empty set."""
    macro_f1: float
    """Unweighted mean F1 over the classes present in y_true or y_pred (see `macro_f1`)."""
    loss: float | None
    """Mean loss on the set, when the caller computed one."""
    per_class: tuple[ClassReport, ...]
    """One entry per class, in the order of `classes`, including classes that never occur."""
    confusion: tuple[tuple[int, ...], ...]
    """confusion[i][j] counts examples of true class i predicted as class j (rows true, columns predicted)."""
    classes: tuple[str, ...]
    """Class names; label i means classes[i]."""
    n: int
    """Number of examples evaluated."""

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, so `json.dumps` works without a custom encoder."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "loss": self.loss,
            "n": self.n,
            "classes": list(self.classes),
            "per_class": [
                {"name": c.name, "precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support}
                for c in self.per_class
            ],
            "confusion": [list(row) for row in self.confusion],
        }

    def format(self) -> str:
        """A plain-text report: summary line, per-class table, then the confusion matrix."""
        header = f"accuracy {self.accuracy:.3f}  macro-F1 {self.macro_f1:.3f}  n {self.n}"
        if self.loss is not None:
            header += f"  loss {self.loss:.4g}"
        return "\n".join([header, "", *self._class_table(), "", *self._matrix_lines()])

    def _class_table(self) -> list[str]:
        names = [_short(c.name) for c in self.per_class]
        width = max([len("class"), *map(len, names)])
        support_width = max([len("support"), *(len(str(c.support)) for c in self.per_class)])
        lines = [f"{'class':<{width}}  precision  recall     F1  {'support':>{support_width}}"]
        for name, c in zip(names, self.per_class):
            lines.append(
                f"{name:<{width}}  {c.precision:>9.3f}  {c.recall:>6.3f}  {c.f1:>5.3f}  {c.support:>{support_width}}"
            )
        return lines

    def _matrix_lines(self) -> list[str]:
        shown = _most_frequent(self.confusion, MAX_MATRIX_CLASSES)
        names = [_short(self.classes[i]) for i in shown]
        corner = "true \\ pred"
        row_width = max([len(corner), *map(len, names)])
        cells = [[str(self.confusion[i][j]) for j in shown] for i in shown]
        widths = [max([len(names[c]), *(len(row[c]) for row in cells)]) for c in range(len(shown))]
        title = "confusion matrix (rows: true class, columns: predicted class)"
        if len(shown) < len(self.classes):
            title += f"; showing the {len(shown)} most frequent of {len(self.classes)} classes"
        lines = [title, "  ".join([f"{corner:<{row_width}}", *(f"{n:>{w}}" for n, w in zip(names, widths))])]
        for name, row in zip(names, cells):
            lines.append("  ".join([f"{name:<{row_width}}", *(f"{v:>{w}}" for v, w in zip(row, widths))]))
        return lines


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Fraction of positions where the prediction equals the label; 0.0 for empty input (never NaN)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in y_true or y_pred.

    Classes absent from both are left out rather than counted as F1 = 0: a validation split that happens
    to lack a rare class should not score worse for it, and the value then matches sklearn's
    `f1_score(average="macro", labels=<labels present>, zero_division=0)`. A class that is predicted but
    never true (or the reverse) does count, with F1 = 0. Empty input gives 0.0.
    """
    if num_classes < 1:
        raise TunelabError(f"num_classes must be at least 1, got {num_classes}")
    t, p = _pair(y_true, y_pred, num_classes)
    return _macro(_confusion(t, p, num_classes))


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    loss: float | None = None,
) -> ClassificationReport:
    """Accuracy, macro-F1 (as `macro_f1` defines it), per-class scores and the confusion matrix."""
    classes = tuple(str(c) for c in classes)
    if not classes:
        raise TunelabError("classes is empty; a classification report needs at least one class name")
    t, p = _pair(y_true, y_pred, len(classes))
    confusion = _confusion(t, p, len(classes))
    precision, recall, f1, support = _scores(confusion)
    per_class = tuple(
        ClassReport(name, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, name in enumerate(classes)
    )
    return ClassificationReport(
        accuracy=float(np.trace(confusion) / t.size) if t.size else 0.0,
        macro_f1=_macro(confusion),
        loss=None if loss is None else float(loss),
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        classes=classes,
        n=int(t.size),
    )


def top_k(probabilities: np.ndarray, classes: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """For each row, the k most probable (class name, probability) pairs, most probable first.

    k larger than the number of classes is clipped rather than rejected, so callers can ask for "top 5"
    whatever the task. Ties keep class order, so the output is deterministic.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2:
        raise TunelabError(f"probabilities must be a 2-D array (examples x classes), got shape {probs.shape}")
    if probs.shape[1] != len(classes):
        raise TunelabError(f"probabilities has {probs.shape[1]} columns but there are {len(classes)} classes")
    if k < 1:
        raise TunelabError(f"k must be at least 1, got {k}")
    k = min(k, len(classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(str(classes[j]), float(row[j])) for j in idx] for row, idx in zip(probs, order)]


def _labels(name: str, values: Sequence[int] | np.ndarray) -> np.ndarray:
    """A 1-D int64 array of labels, or a TunelabError saying why `values` is not one."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise TunelabError(f"{name} must be a 1-D sequence of integer labels, got shape {arr.shape}")
    if arr.size == 0 or arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise TunelabError(f"{name} must hold integer class indices, got values of type {arr.dtype}")


def _pair(y_true: Any, y_pred: Any, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated label arrays of equal length, each label in range(num_classes) when that is given."""
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if t.size != p.size:
        raise TunelabError(f"y_true and y_pred differ in length: {t.size} labels vs {p.size} predictions")
    if num_classes is not None:
        for name, arr in (("y_true", t), ("y_pred", p)):
            bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
            if bad.size:
                i = int(bad[0])
                raise TunelabError(
                    f"{name}[{i}] = {int(arr[i])} is not a class index; expected 0..{num_classes - 1} "
                    f"for {num_classes} classes"
                )
    return t, p


def _confusion(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """k x k counts, rows true class, columns predicted class."""
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den is 0 (computed without a warning)."""
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def _scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    # 2tp / (2tp + fp + fn) equals 2PR / (P + R) where that is defined, and is 0 (not NaN) when tp = 0.
    f1 = _ratio(2 * tp, support + predicted)
    return _ratio(tp, predicted), _ratio(tp, support), f1, support


def _macro(confusion: np.ndarray) -> float:
    """Mean F1 over classes that occur as a label or a prediction; 0.0 if none do."""
    _, _, f1, _ = _scores(confusion)
    present = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def _short(name: str) -> str:
    """`name` cut to NAME_WIDTH characters, ending in '...' when it was cut."""
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 3] + "..."


def _most_frequent(confusion: tuple[tuple[int, ...], ...], limit: int) -> list[int]:
    """Indices of at most `limit` classes with the largest support (ties: most predicted, then lowest index).

    Returned in class order, so the shown sub-matrix reads like the full one.
    """
    k = len(confusion)
    if k <= limit:
        return list(range(k))
    support = [sum(row) for row in confusion]
    predicted = [sum(confusion[i][j] for i in range(k)) for j in range(k)]
    ranked = sorted(range(k), key=lambda i: (-support[i], -predicted[i], i))
    return sorted(ranked[:limit])
