"""The data split of examples/own_source_model.py: disjoint tasks, fixed rows, labels renumbered per task.

The example itself takes minutes and needs the Fashion-MNIST package, so CI does not run it; these checks
cover what its numbers rest on (no image in two splits, no class in both tasks) on small synthetic arrays.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from tunelab.data.idx import find_idx_pair, read_idx

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_source_model.py"


def load_example():
    """The example as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("own_source_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_the_two_tasks_share_no_class_and_cover_all_ten():
    ex = load_example()
    assert not set(ex.SOURCE_CLASSES) & set(ex.TARGET_CLASSES)
    assert sorted(ex.SOURCE_CLASSES + ex.TARGET_CLASSES) == list(range(10))


def test_rows_are_the_first_of_each_class_and_consecutive_ranges_do_not_overlap():
    ex = load_example()
    labels = np.array([3, 1, 3, 1, 2, 3, 1, 3])
    first = ex.per_class_rows(labels, (1, 3), 0, 2)
    after = ex.per_class_rows(labels, (1, 3), 2, 1)
    assert first.tolist() == [0, 1, 2, 3]
    assert after.tolist() == [5, 6]
    assert not set(first) & set(after)


def test_written_labels_are_renumbered_in_the_order_of_the_classes(tmp_path):
    ex = load_example()
    images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)
    labels = np.array([9, 6, 9, 1])
    ex.write_task(tmp_path, "train", images, labels, np.array([0, 1, 3]), (1, 6, 9))
    back = read_idx(*find_idx_pair(tmp_path, "train"))
    assert back.labels == [2, 1, 0]
    assert np.array_equal(back.inputs[2], images[3])
