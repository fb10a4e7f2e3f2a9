"""Peak memory of one run, even when several runs share a process (compare, advise --verify, notebooks).

The process-wide high-water mark (`ru_maxrss`) never goes down, so after a large run every later run in the
same process would report the large run's peak. On Linux a small thread samples the resident set size from
/proc/self/statm instead; on a GPU, torch's own peak counter is reset at the start.

May import: the standard library and torch only.
"""

from __future__ import annotations

import os
import resource
import threading
from typing import Self

import torch

STATM = "/proc/self/statm"


class PeakMemory:
    """Use as a context manager; `.mb` is the peak in MiB seen inside it (GPU memory when on a GPU)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        elif os.path.exists(STATM):
            self._sample()
            self._thread = threading.Thread(target=self._watch, name="tunelab-peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._sample()

    @property
    def mb(self) -> float:
        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
        if self._thread is None:  # not Linux: the process-wide high-water mark is all there is (KiB on Linux/BSD)
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self._sample()
        return self.peak_bytes / 2**20

    def _sample(self) -> None:
        with open(STATM) as f:
            resident_pages = int(f.read().split()[1])
        self.peak_bytes = max(self.peak_bytes, resident_pages * os.sysconf("SC_PAGE_SIZE"))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
