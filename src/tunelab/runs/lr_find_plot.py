"""The lr range test's plot as PNG bytes: the loss against the head lr on a log axis, the two readings marked.

Drawn like the comparison report's plots (`tunelab.comparison.plots`): matplotlib's object API on the Agg
renderer (no pyplot state, no display), imported when a figure is drawn so the CLI's start-up never pays
for it, and no version stamp in the file (the same curve gives the same bytes).

May import: errors; matplotlib lazily.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from tunelab.runs.lr_find_result import LrFindResult

DPI = 110
"""The report plots' resolution: sharp on a laptop screen, a small file."""


def plot_png(result: LrFindResult, title: str, suggested_by: str) -> bytes:
    """Loss per step (faint) and smoothed loss against the head lr; steepest point, minimum and suggestion marked.

    The y axis shows the fall in full and the start of the rise after the minimum: the diverging last steps
    can be orders of magnitude higher and would flatten the part of the curve a person reads.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TunelabError("the lr-find plot needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="C0", alpha=0.3, linewidth=1, label="loss per step")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="smoothed loss")
    at_minimum = result.smoothed[result.lrs.index(result.minimum_lr)]
    falling = max(result.smoothed[: result.lrs.index(result.minimum_lr) + 1])
    high = min(max(result.smoothed), falling + 0.5 * (falling - at_minimum))
    low = min(min(result.losses), at_minimum)
    margin = 0.05 * max(high - low, 1e-8)
    ax.set_ylim(low - margin, high + margin)
    ax.plot([result.minimum_lr], [at_minimum], "o", color="black", label=f"minimum at {result.minimum_lr:.2g}")
    if result.steepest_lr is not None:
        ax.axvline(result.steepest_lr, color="C1", linestyle=":", label=f"steepest descent {result.steepest_lr:.2g}")
    ax.axvline(
        result.suggested_lr,
        color="C2",
        linestyle="--",
        linewidth=2,
        label=f"{suggested_by} = {result.suggested_lr:.2g} (suggested)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("head learning rate (log scale; each parameter group at its strategy's scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"{title}\nthe suggestion is a starting point: check it with a short run", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
