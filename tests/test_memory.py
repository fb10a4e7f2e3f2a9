"""Peak memory is measured per run, not as the process's lifetime high-water mark."""

from __future__ import annotations

import numpy as np

from tunelab.runs.memory import PeakMemory


def test_a_later_smaller_run_does_not_inherit_an_earlier_peak():
    with PeakMemory() as big:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        del block
    with PeakMemory() as small:
        np.ones(1024).sum()
    assert big.mb > small.mb + 150
