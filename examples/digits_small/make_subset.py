"""Write the digits_small idx files from scikit-learn's bundled copy of the UCI handwritten digits.

Run once (needs `pip install scikit-learn`); the output is committed, so the example does not need it.
See PROVENANCE.md for the selection rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from tunelab.data.idx import write_idx

HERE = Path(__file__).resolve().parent
TRAIN_PER_CLASS = 20
TEST_PER_CLASS = 30


def main() -> None:
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 gray levels -> 0..255
    train, test = [], []
    for c in range(10):
        where = np.flatnonzero(digits.target == c)  # file order
        train += list(where[:TRAIN_PER_CLASS])
        test += list(where[TRAIN_PER_CLASS : TRAIN_PER_CLASS + TEST_PER_CLASS])
    for prefix, rows in (("train", sorted(train)), ("t10k", sorted(test))):
        write_idx(HERE, prefix, images[rows], digits.target[rows])
        print(prefix, len(rows))


if __name__ == "__main__":
    main()
