"""The report's plots as PNG bytes, drawn with matplotlib's object API on the Agg renderer.

`matplotlib.figure.Figure` is used directly instead of pyplot: no global backend switch, no display needed,
no figure left open in a registry, and safe to call from a program that has its own pyplot state.
Each strategy keeps one colour in every plot; scratch, the baseline, is always black and dashed.
matplotlib is imported when a figure is drawn, not with this module, so the CLI's start-up never pays for it.

May import: compare.results (the numbers), errors, strategies (where a recipe's phases switch); matplotlib lazily.
"""

from __future__ import annotations

import io

from tunelab.comparison.results import StrategyResult, at_fraction, largest_fraction, strategy_order
from tunelab.errors import TunelabError
from tunelab.strategies import parse_strategy

DPI = 110
"""Resolution of the PNGs: sharp enough on a laptop screen, small enough to embed in one HTML page."""

MARKS = {"best": "★", "within_noise": "≈", "cheapest_near_best": "◆", "flagged": "⚑", "failed": "✗"}
"""Symbols after a strategy's name: best mean score; within noise of the best (not the best itself);
cheapest within noise of the best; a run raised a sanity flag; (a table row of) a failed run."""

LOW, HIGH = 0.0, 1.0
"""The range of every metric the tasks report (accuracy, F1): bands and error bars are clipped to it."""


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TunelabError("the report's plots need matplotlib: pip install matplotlib") from None
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same runs, same bytes
    return buffer.getvalue()


def _styles(results: list[StrategyResult]) -> dict[str, dict]:
    """Line style per strategy spec: a tab10 colour each, scratch black and dashed."""
    specs = sorted({r.strategy for r in results}, key=strategy_order)
    styles, palette = {}, [f"C{i}" for i in range(10)]
    others = [s for s in specs if s.split(":")[0] != "scratch"]
    for i, spec in enumerate(others):
        styles[spec] = {"color": palette[i % len(palette)], "linestyle": "-"}
    for spec in specs:
        styles.setdefault(spec, {"color": "black", "linestyle": "--"})
    return styles


def label(r: StrategyResult) -> str:
    """Strategy spec followed by its marks: ★ best, ≈ within noise of it, ◆ cheapest of those, ⚑ flagged."""
    on = {
        "best": r.best,
        "within_noise": r.within_noise and not r.best,
        "cheapest_near_best": r.cheapest_near_best,
        "flagged": bool(r.flags),
    }
    marks = "".join(MARKS[name] for name, shown in on.items() if shown)
    return f"{r.strategy} {marks}".rstrip()


def clipped(mean: float, spread: float) -> tuple[float, float]:
    """(low, high) of mean ± spread inside the metric's range [0, 1]: a band never promises 1.05 accuracy."""
    return max(LOW, mean - spread), min(HIGH, mean + spread)


def _yerr(group: list[StrategyResult]) -> list[list[float]]:
    """Asymmetric error bars of ±std clipped to [0, 1], as matplotlib's 2 x N yerr."""
    bounds = [clipped(r.score_mean, r.score_std) for r in group]
    return [
        [r.score_mean - low for r, (low, _) in zip(group, bounds)],
        [high - r.score_mean for r, (_, high) in zip(group, bounds)],
    ]


def _metric_label(results: list[StrategyResult]) -> str:
    return f"validation {results[0].metric}"


def score_name(results: list[StrategyResult]) -> str:
    """What the scores are: 'test accuracy', 'validation accuracy', or 'accuracy (test or validation)' when mixed."""
    on = {r.scored_on for r in results}
    metric = results[0].metric
    if on == {"test"}:
        return f"test {metric}"
    return f"validation {metric}" if on == {"validation"} else f"{metric} (test or validation)"


def _log_x(ax, values: list[float]) -> None:
    """A log x axis labelled with plain numbers (20, not 2×10¹); in-between ticks labelled when the range is short."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    short = max(values) / max(min(values), 1e-9) < 30
    ax.xaxis.set_minor_formatter(plain if short else NullFormatter())


def phase_switches(spec: str, epochs: int) -> tuple[int, ...]:
    """Epochs (from 1) after which a strategy's next phase begins (gradual unfreezing), from its spec alone
    (`Strategy.phase_starts`): none for a strategy with one phase, or a spec this tunelab cannot parse."""
    try:
        return tuple(start for start in parse_strategy(spec).phase_starts(epochs) if start > 0)
    except TunelabError:
        return ()


def learning_curves(results: list[StrategyResult]) -> bytes:
    """Validation metric per epoch per strategy, a ±std band where runs were averaged; one panel per fraction."""
    return _png(learning_curves_figure(results))


def learning_curves_figure(results: list[StrategyResult]):
    """The learning-curve Figure itself (bands clipped to [0, 1]), so a test can read the drawn data back."""
    styles = _styles(results)
    fractions = sorted({r.train_fraction for r in results})
    cols = min(len(fractions), 3)
    rows = -(-len(fractions) // cols)
    fig = _figure(5.2 * cols + 1.6, 3.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax in axes.flat[len(fractions) :]:
        ax.set_visible(False)
    for ax, fraction in zip(axes.flat, fractions):
        group = at_fraction(results, fraction)
        for r in group:
            epochs = range(1, len(r.curve_mean) + 1)
            style = styles[r.strategy]
            name = label(r) if len(fractions) == 1 else r.strategy  # marks differ between panels
            ax.plot(epochs, r.curve_mean, marker="o", markersize=3, label=name, **style)
            for switch in phase_switches(r.strategy, len(r.curve_mean)):  # between the phases' epochs
                ax.axvline(switch + 0.5, color=style["color"], linestyle=":", linewidth=1, alpha=0.7)
            if r.n_runs > 1:
                low, high = zip(*(clipped(m, s) for m, s in zip(r.curve_mean, r.curve_std)))
                ax.fill_between(epochs, low, high, color=style["color"], alpha=0.15, linewidth=0)
        ax.set_title(f"{group[0].train_examples:.0f} training examples ({fraction:.0%} of the data)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(_metric_label(results))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=9, title="strategy (±1 std band, in [0, 1])")
    return fig


def cost_vs_metric(results: list[StrategyResult]) -> bytes:
    """Mean training time (log axis) against mean metric with ±std error bars, one labelled point per strategy."""
    styles = _styles(results)
    group = at_fraction(results, largest_fraction(results))
    fig = _figure(7.0, 4.6)
    ax = fig.subplots()
    for r in group:
        seconds = max(r.train_seconds_mean, 1e-3)  # a log axis cannot show 0
        ax.errorbar(seconds, r.score_mean, yerr=_yerr([r]), fmt="o", capsize=4, color=styles[r.strategy]["color"])
        ax.annotate(label(r), (seconds, r.score_mean), xytext=(6, 4), textcoords="offset points", fontsize=9)
    _log_x(ax, [max(r.train_seconds_mean, 1e-3) for r in group])
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel("mean training time per run (s, log scale)")
    ax.set_ylabel(f"{score_name(results)} (mean ± std)")
    ax.set_title(
        f"Cost against {results[0].metric} at {group[0].train_examples:.0f} training examples "
        "(★ best, ◆ cheapest within noise of the best)",
        fontsize=10,
    )
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def data_fractions(results: list[StrategyResult]) -> bytes:
    """Mean metric against the number of training examples (log axis), one line per strategy."""
    styles = _styles(results)
    fig = _figure(7.0, 4.6)
    ax = fig.subplots()
    for spec in sorted({r.strategy for r in results}, key=strategy_order):
        line = sorted((r for r in results if r.strategy == spec), key=lambda r: r.train_examples)
        ax.errorbar(
            [r.train_examples for r in line],
            [r.score_mean for r in line],
            yerr=_yerr(line),
            marker="o",
            markersize=4,
            capsize=3,
            label=spec,
            **styles[spec],
        )
    _log_x(ax, [r.train_examples for r in results])
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel(f"{score_name(results)} (mean ± std)")
    ax.set_title("How much data each strategy needs", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    return _png(fig)


def render_plots(results: list[StrategyResult]) -> dict[str, bytes]:
    """File name -> PNG bytes; data_fractions.png only when the runs cover at least two fractions."""
    plots = {"learning_curves.png": learning_curves(results), "cost_vs_metric.png": cost_vs_metric(results)}
    if len({r.train_fraction for r in results}) >= 2:
        plots["data_fractions.png"] = data_fractions(results)
    return plots
