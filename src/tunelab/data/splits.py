"""Stratified index splits: hold-out, k-fold and subsampling, all deterministic for a seed.

Transfer-learning data sets are often small and unbalanced, so a plain random split can leave a class
out of validation entirely; every function here works class by class instead. They return index lists
(into the label list given) so they apply equally to images, text or anything else `Examples` holds;
`split_examples` applies the hold-out split to an `Examples` and is what the loaders use, and
`split_test_examples` holds a test set out of the training data before any of that happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunelab.data.examples import Examples, Splits
from tunelab.errors import DataError, TunelabError, brief


def _by_class(labels: Sequence[int], rng: np.random.Generator) -> dict[int, list[int]]:
    """Indices of each class, shuffled; classes in sorted order so the result depends only on the seed."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return {c: [groups[c][j] for j in rng.permutation(len(groups[c]))] for c in sorted(groups)}


def _class_name(label: int, classes: Sequence[str] | None) -> str:
    if classes is not None and 0 <= label < len(classes):
        return repr(brief(classes[label]))
    return f"with label {label}"


def _check_fraction(name: str, value: float, *, allow_one: bool) -> None:
    high_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value > 0.0 and high_ok):
        upper = "1]" if allow_one else "1)"
        raise TunelabError(f"{name} must be in (0, {upper}, got {value!r}")


def stratified_split(
    labels: Sequence[int],
    val_fraction: float,
    seed: int = 0,
    *,
    keep: int = 1,
) -> tuple[list[int], list[int]]:
    """Split indices into (train, val), taking about `val_fraction` of every class for val.

    Each class with more than `keep` examples gets at least one example in val and keeps at least `keep`
    in train, so validation can measure every class the model learns; a class with `keep` examples or
    fewer stays whole in train. Both lists are sorted.
    """
    _check_fraction("val_fraction", val_fraction, allow_one=False)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for members in _by_class(labels, rng).values():
        n = len(members)
        n_val = 0 if n <= keep else min(max(int(round(n * val_fraction)), 1), n - keep)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return sorted(train), sorted(val)


def stratified_kfold(
    labels: Sequence[int],
    k: int,
    seed: int = 0,
    *,
    classes: Sequence[str] | None = None,
) -> list[tuple[list[int], list[int]]]:
    """Split indices into `k` (train, val) folds whose val parts are disjoint and cover every index.

    Each class is dealt round-robin over the folds, continuing where the previous class stopped, so a
    class's count differs by at most one between folds and so do the fold sizes. `classes` only names a
    class in the error raised when it has fewer than `k` examples (some fold would then miss it).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise TunelabError(f"k must be an integer >= 2, got {k!r}")
    rng = np.random.default_rng(seed)
    groups = _by_class(labels, rng)
    for label, members in groups.items():
        if len(members) < k:
            raise DataError(
                f"class {_class_name(label, classes)} has {len(members)} example(s), fewer than k={k} folds; "
                f"add examples or use k <= {len(members)}"
            )
    folds: list[list[int]] = [[] for _ in range(k)]
    position = 0
    for members in groups.values():
        for index in members:
            folds[position % k].append(index)
            position += 1
    result = []
    for f in range(k):
        val = sorted(folds[f])
        train = sorted(i for g in range(k) if g != f for i in folds[g])
        result.append((train, val))
    return result


def stratified_subset(labels: Sequence[int], fraction: float, seed: int = 0) -> list[int]:
    """Keep about `fraction` of every class (at least one example each), for learning-curve runs.

    Returns sorted indices. `fraction=1` keeps everything.
    """
    _check_fraction("fraction", fraction, allow_one=True)
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    for members in _by_class(labels, rng).values():
        n_keep = min(max(int(round(len(members) * fraction)), 1), len(members))
        kept.extend(members[:n_keep])
    return sorted(kept)


def split_examples(examples: Examples, val_fraction: float, seed: int) -> Splits:
    """Stratified train/val split that refuses classes too small to appear on both sides."""
    _check_fraction("val_fraction", val_fraction, allow_one=False)
    counts = np.bincount(np.asarray(examples.labels, dtype=np.int64), minlength=len(examples.classes))
    for label, count in enumerate(counts):
        if count < 2:
            raise DataError(
                f"class '{brief(examples.classes[label])}' has {count} example(s); a validation split needs at "
                "least 2 per class: add examples or provide a separate validation set",
                examples.source,
            )
    train_idx, val_idx = stratified_split(examples.labels, val_fraction, seed)
    return Splits(examples.subset(train_idx), examples.subset(val_idx))


TEST_SEED = 0x7E57
"""Seed of the --test-fraction split, fixed and independent of a run's --seed: every seed, strategy, fold and
training fraction of a comparison is scored on the same test examples, so their scores are comparable."""

TEST_KEEP = 2
"""Examples of each class the test split leaves for training: two, so the rest can still be split into
train and validation with the class on both sides (a class this small is not in the test set at all)."""


def split_test_examples(examples: Examples, fraction: float, strata: Sequence[int]) -> tuple[Examples, Examples]:
    """Hold about `fraction` of every stratum out as a test set: (the rest, test), both in reading order.

    The split uses `TEST_SEED`, not the run's seed, and happens before the validation split, the folds and
    the training fraction, so the test examples never reach training or epoch selection. `strata` is one
    integer per example (its class, or 0 for examples with many labels such as tagged sentences).
    """
    _check_fraction("test_fraction", fraction, allow_one=False)
    rest, test = stratified_split(strata, fraction, TEST_SEED, keep=TEST_KEEP)
    if not test:
        raise DataError(
            f"test_fraction {fraction:g} holds out no example: a class needs at least {TEST_KEEP + 1} examples to "
            "give one to the test set; add examples, raise the fraction or give a separate test file (test_data)",
            examples.source,
        )
    return examples.subset(rest), examples.subset(test)
