"""Stratified hold-out, k-fold and subset splits: disjoint, covering, per-class, deterministic."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.data.examples import Examples
from tunelab.data.splits import split_examples, stratified_kfold, stratified_split, stratified_subset
from tunelab.errors import DataError, TunelabError

LABELS = [0] * 50 + [1] * 7 + [2] * 2 + [3] * 1


def test_split_is_disjoint_covering_and_stratified():
    train, val = stratified_split(LABELS, 0.2, seed=0)
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == list(range(len(LABELS)))
    val_counts = Counter(LABELS[i] for i in val)
    train_counts = Counter(LABELS[i] for i in train)
    assert val_counts[0] == 10 and val_counts[1] == 1 and val_counts[2] == 1
    assert train_counts[2] == 1
    assert val_counts[3] == 0 and train_counts[3] == 1  # a singleton class stays in train


def test_split_is_deterministic_per_seed():
    assert stratified_split(LABELS, 0.3, seed=5) == stratified_split(LABELS, 0.3, seed=5)
    assert stratified_split(LABELS, 0.3, seed=5) != stratified_split(LABELS, 0.3, seed=6)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(TunelabError, match="val_fraction"):
        stratified_split(LABELS, fraction, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 5), min_size=1, max_size=80),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_properties(labels, fraction, seed):
    train, val = stratified_split(labels, fraction, seed)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(len(labels)))
    counts = Counter(labels)
    for label, n in counts.items():
        in_val = sum(1 for i in val if labels[i] == label)
        if n >= 2:
            assert 1 <= in_val <= n - 1


def test_kfold_covers_everything_once_and_balances_classes():
    folds = stratified_kfold(LABELS[:-1], k=2, seed=1)  # drop the singleton so k=2 is possible
    labels = LABELS[:-1]
    assert len(folds) == 2
    all_val = [i for _, val in folds for i in val]
    assert sorted(all_val) == list(range(len(labels)))
    for train, val in folds:
        assert set(train).isdisjoint(val)
        assert sorted(train + val) == list(range(len(labels)))
    for label in set(labels):
        per_fold = [sum(1 for i in val if labels[i] == label) for _, val in folds]
        assert max(per_fold) - min(per_fold) <= 1
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 3), min_size=5, max_size=60), k=st.integers(2, 5), seed=st.integers(0, 99))
def test_kfold_properties(labels, k, seed):
    if min(Counter(labels).values()) < k:
        with pytest.raises(DataError):
            stratified_kfold(labels, k, seed)
        return
    folds = stratified_kfold(labels, k, seed)
    assert sorted(i for _, val in folds for i in val) == list(range(len(labels)))
    for label in set(labels):
        per_fold = [sum(1 for i in val if labels[i] == label) for _, val in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert folds == stratified_kfold(labels, k, seed)


def test_kfold_names_the_small_class():
    with pytest.raises(DataError, match=r"class 'wasps' has 2 example\(s\), fewer than k=3"):
        stratified_kfold([0, 0, 0, 1, 1], k=3, seed=0, classes=("ants", "wasps"))
    with pytest.raises(TunelabError, match="k must be"):
        stratified_kfold([0, 0, 1, 1], k=1, seed=0)


def test_subset_keeps_every_class():
    kept = stratified_subset(LABELS, 0.1, seed=0)
    counts = Counter(LABELS[i] for i in kept)
    assert counts == {0: 5, 1: 1, 2: 1, 3: 1}
    assert kept == sorted(set(kept))
    assert stratified_subset(LABELS, 1.0, seed=0) == list(range(len(LABELS)))
    assert kept == stratified_subset(LABELS, 0.1, seed=0)


def test_split_examples_refuses_a_singleton_class():
    examples = Examples(["a", "b", "c"], [0, 0, 1], ("pos", "neg"), "memory")
    with pytest.raises(DataError, match=r"memory: class 'neg' has 1 example"):
        split_examples(examples, 0.5, seed=0)
    ok = split_examples(Examples(["a", "b", "c", "d"], [0, 0, 1, 1], ("pos", "neg"), "memory"), 0.5, 0)
    assert sorted(ok.train.labels) == [0, 1] and sorted(ok.val.labels) == [0, 1]
    assert ok.train.classes == ok.val.classes == ("pos", "neg")


def test_examples_subset_keeps_classes_and_source():
    examples = Examples(["a", "b", "c"], [0, 1, 0], ("x", "y"), "somewhere")
    sub = examples.subset([2, 1])
    assert sub.inputs == ["c", "b"] and sub.labels == [0, 1]
    assert sub.classes == ("x", "y") and sub.source == "somewhere" and len(sub) == 2
