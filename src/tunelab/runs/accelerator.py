"""The one place a run, an lr-find, `eval` or `predict` gets its `accelerate.Accelerator`.

accelerate keeps one state per process and refuses a second Accelerator with another mixed precision
("AcceleratorState has already been initialized and cannot be changed"). Under a launcher that is right: the
processes of one launch share their settings. A library user calling `tunelab.train` twice in one Python
process with different `mixed_precision`, or `evaluate` after a bf16 run, is not a launch, though: there
the state belongs to the last call, so it is reset first (`make_accelerator`).

May import: torch. accelerate is imported lazily, where an Accelerator is made (the heavy-library exception).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator


def mixed_precision_mode(setting: str) -> str:
    """accelerate's mixed_precision for --mixed-precision: auto = bf16 (or fp16) on a GPU, none on a CPU."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def make_accelerator(mixed_precision: str, **kwargs) -> Accelerator:
    """An Accelerator at `mixed_precision` (a --mixed-precision value), on the CPU when there is no GPU.

    In a process no launcher started (no WORLD_SIZE), a state left by an earlier call with another precision
    is reset rather than refused; the state of a launch is never touched.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mode = mixed_precision_mode(mixed_precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != mode and "WORLD_SIZE" not in os.environ:
        AcceleratorState._reset_state()  # private: accelerate has no public way to change it in-process
    # cpu=True without a GPU: under a multi-process launcher that makes accelerate use gloo (MULTI_CPU)
    return Accelerator(mixed_precision=mode, cpu=not torch.cuda.is_available(), **kwargs)
