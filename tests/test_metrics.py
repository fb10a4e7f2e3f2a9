"""Classification metrics: hand-computed cases, a reference formula on random data, the text report, top-k."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.errors import TunelabError
from tunelab.tasks.metrics import (
    ClassificationReport,
    ClassReport,
    accuracy,
    classification_report,
    macro_f1,
    top_k,
)

pytestmark = pytest.mark.filterwarnings("error")  # any numpy division warning fails the test

ABC = ("a", "b", "c")


def reference_macro_f1(y_true: list[int], y_pred: list[int], num_classes: int) -> float:
    """The textbook definition, one class at a time, averaged over classes seen in either list."""
    scores = []
    for c in range(num_classes):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        if tp + fp + fn == 0:
            continue  # absent from both: not averaged
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def test_perfect_prediction():
    report = classification_report([0, 1, 2, 2], [0, 1, 2, 2], ABC)
    assert report.accuracy == 1.0 and report.macro_f1 == 1.0 and report.n == 4
    assert [(c.precision, c.recall, c.f1, c.support) for c in report.per_class] == [
        (1.0, 1.0, 1.0, 1),
        (1.0, 1.0, 1.0, 1),
        (1.0, 1.0, 1.0, 2),
    ]
    assert report.confusion == ((1, 0, 0), (0, 1, 0), (0, 0, 2))


def test_hand_computed_three_class_case():
    # confusion (rows true, cols predicted):  a: [2 1 0]   b: [0 1 1]   c: [0 0 1]
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ABC, loss=0.25)
    assert report.confusion == ((2, 1, 0), (0, 1, 1), (0, 0, 1))
    expected = [
        ClassReport("a", precision=2 / 2, recall=2 / 3, f1=0.8, support=3),
        ClassReport("b", precision=1 / 2, recall=1 / 2, f1=0.5, support=2),
        ClassReport("c", precision=1 / 2, recall=1 / 1, f1=2 / 3, support=1),
    ]
    for got, want in zip(report.per_class, expected):
        assert got.name == want.name and got.support == want.support
        assert (got.precision, got.recall, got.f1) == pytest.approx((want.precision, want.recall, want.f1))
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.loss == 0.25


def test_all_one_class_prediction_gives_zero_not_nan():
    report = classification_report([0, 1, 2, 0], [0, 0, 0, 0], ABC)
    a, b, c = report.per_class
    assert (a.precision, a.recall, a.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert (b.precision, b.recall, b.f1) == (0.0, 0.0, 0.0)
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)
    assert report.accuracy == 0.5
    assert report.macro_f1 == pytest.approx((2 / 3) / 3)


def test_confusion_rows_are_true_columns_are_predicted():
    report = classification_report([0, 0, 0], [1, 1, 1], ("x", "y"))
    assert report.confusion == ((0, 3), (0, 0))
    assert report.per_class[0].support == 3 and report.per_class[1].support == 0


def test_classes_absent_from_both_do_not_dilute_macro_f1():
    assert macro_f1([0, 1], [0, 1], num_classes=4) == 1.0
    report = classification_report([0, 1], [0, 1], ("a", "b", "never", "nope"))
    assert report.macro_f1 == 1.0
    assert report.per_class[2] == ClassReport("never", 0.0, 0.0, 0.0, 0)
    # A class that is only predicted does count, with F1 = 0.
    assert macro_f1([0, 0], [0, 1], num_classes=4) == pytest.approx((2 / 3 + 0.0) / 2)


def test_standalone_functions_accept_arrays_and_agree_with_report():
    t, p = np.array([0, 2, 1, 1, 0]), np.array([0, 1, 1, 1, 2])
    report = classification_report(t, p, ABC)
    assert accuracy(t, p) == report.accuracy == pytest.approx(3 / 5)
    assert macro_f1(t, p, 3) == report.macro_f1
    assert accuracy([], []) == 0.0 and macro_f1([], [], 3) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), max_size=40),
        )
    )
)
def test_macro_f1_matches_reference_formula(case):
    k, pairs = case
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    expected = reference_macro_f1(y_true, y_pred, k)
    assert macro_f1(y_true, y_pred, k) == pytest.approx(expected)
    report = classification_report(y_true, y_pred, [f"c{i}" for i in range(k)])
    assert report.macro_f1 == pytest.approx(expected)
    assert sum(map(sum, report.confusion)) == report.n == len(pairs)
    assert report.accuracy == pytest.approx(sum(t == p for t, p in pairs) / len(pairs) if pairs else 0.0)


def test_errors_for_mismatched_lengths_and_bad_labels():
    with pytest.raises(TunelabError, match="differ in length"):
        classification_report([0, 1], [0], ABC)
    with pytest.raises(TunelabError, match="differ in length"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(TunelabError, match="differ in length"):
        macro_f1([0], [0, 1], 3)
    with pytest.raises(TunelabError, match=r"y_pred\[1\] = 3"):
        classification_report([0, 1], [0, 3], ABC)
    with pytest.raises(TunelabError, match=r"y_true\[0\] = -1"):
        macro_f1([-1], [0], 3)
    with pytest.raises(TunelabError, match="integer"):
        accuracy([0.5], [0])
    with pytest.raises(TunelabError, match="empty"):
        classification_report([], [], [])


def test_to_dict_is_json_ready():
    report = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ("cat", "dog"), loss=np.float32(0.5))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["classes"] == ["cat", "dog"] and data["n"] == 3 and data["loss"] == 0.5
    assert data["confusion"] == [[1, 0], [1, 1]]
    assert data["per_class"][1] == {
        "name": "dog",
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }


def test_format_contains_classes_accuracy_and_aligned_table():
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ("cat", "dog", "bird"), loss=0.1234)
    text = report.format()
    header = text.splitlines()[0]
    assert "accuracy 0.667" in header and "macro-F1 0.656" in header and "n 6" in header and "loss 0.1234" in header
    for name in ("cat", "dog", "bird"):
        assert name in text
    table = text.splitlines()[2:6]
    assert table[0].split() == ["class", "precision", "recall", "F1", "support"]
    assert table[1].split() == ["cat", "1.000", "0.667", "0.800", "3"]
    assert len({len(line) for line in table}) == 1  # columns aligned
    assert "loss" not in classification_report([0], [0], ("a",)).format().splitlines()[0]


def test_format_truncates_long_names_and_limits_matrix_to_20_classes():
    classes = [f"class_with_a_long_name_{i}" for i in range(25)]
    # class i appears i + 1 times, so classes 5..24 are the 20 most frequent
    y = [i for i in range(25) for _ in range(i + 1)]
    text = classification_report(y, y, classes).format()
    assert "class_wit..." in text and "class_with_a_long_name_0" not in text
    assert "showing the 20 most frequent of 25 classes" in text
    matrix = text.split("confusion matrix", 1)[1].splitlines()[2:]
    assert len(matrix) == 20
    assert len(text.split("confusion matrix", 1)[0].strip().splitlines()) == 2 + 1 + 25  # table keeps every class


def test_report_is_frozen():
    report = classification_report([0], [0], ("a",))
    assert isinstance(report, ClassificationReport)
    with pytest.raises(AttributeError):
        report.accuracy = 0.0  # type: ignore[misc]


def test_top_k_orders_descending_and_clips_k():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert top_k(probs, ABC, 2) == [[("b", 0.7), ("c", pytest.approx(0.2))], [("a", 0.5), ("c", 0.3)]]
    clipped = top_k(probs, ABC, 10)
    assert [len(row) for row in clipped] == [3, 3]
    assert [name for name, _ in clipped[0]] == ["b", "c", "a"]
    assert all(row[i][1] >= row[i + 1][1] for row in clipped for i in range(2))
    assert top_k(np.array([[0.5, 0.5]]), ("x", "y"), 1) == [[("x", 0.5)]]  # ties keep class order


def test_top_k_rejects_bad_input():
    with pytest.raises(TunelabError, match="columns"):
        top_k(np.ones((2, 4)), ABC, 1)
    with pytest.raises(TunelabError, match="2-D"):
        top_k(np.ones(3), ABC, 1)
    with pytest.raises(TunelabError, match="k must be"):
        top_k(np.ones((1, 3)), ABC, 0)
