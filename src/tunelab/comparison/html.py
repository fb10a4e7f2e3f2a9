"""The report as text: the tables (Markdown and HTML), a plain-language conclusion, and one self-contained page.

Both tables are built from the same rows, so results.md and report.html always show the same numbers.
The page embeds its plots as base64 data URIs and its CSS inline, and needs no JavaScript: it can be mailed,
archived or opened offline and shows the same thing years later. Every number in the conclusion is computed
from the results passed in; nothing is assumed about which strategy wins.

May import: compare.results (the numbers), compare.plots (the strategy labels and marks the plots also show).
"""

from __future__ import annotations

import base64
import html
import struct

from tunelab.comparison.plots import MARKS, label
from tunelab.comparison.results import SCRATCH, StrategyResult, TransferBenefit, at_fraction, largest_fraction

CAPTIONS = {
    "learning_curves.png": "Validation {metric} after each epoch, mean over runs (band: ±1 std); scratch is dashed.",
    "cost_vs_metric.png": "Mean training time per run (log scale) against {metric}; error bars: ±1 std over runs.",
    "data_fractions.png": "Mean {metric} against the number of training examples (log scale); error bars: ±1 std.",
}
"""Figure captions by file name, in page order."""

NOTES = (
    "★ highest mean score at a training-set size. ◆ cheapest within noise of the best: the least mean wall-clock "
    "training time among strategies whose mean is at least the best mean minus the best's standard deviation "
    "(ties: fewer trainable parameters). ± is the sample standard deviation over seeds or folds. Train time is the "
    "whole run's wall-clock time, feature caching and validation included. Three benefits (Torrey & Shavlik), "
    "from each strategy's mean curve: start = after the first epoch; slope = mean gain per epoch over the first "
    "three epochs; asymptote = best epoch."
)
"""How the marks and columns are defined; printed under the tables of both the Markdown and the HTML report."""

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
main{max-width:1150px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
.meta,.note,figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{padding:4px 10px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{background:#f2f2f4;border-bottom:2px solid #ccc}.text{text-align:left}
tr.best td{font-weight:600}tr.split td{border-top:2px solid #bbb}
ul.conclusion li{margin:.35em 0}
figure{margin:1.2em 0}img{max-width:100%;height:auto;border:1px solid #eee}
"""
"""The page's whole style sheet, inlined so the file stands alone."""


# ---------------------------------------------------------------- numbers as text


def fmt_metric(value: float) -> str:
    return f"{value:.3f}"


def fmt_gain(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def fmt_params(count: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.3g}{suffix}"
    return f"{count:.0f}"


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if seconds < 3600 else f"{seconds / 3600:.3g} h"


def fmt_bytes(count: float) -> str:
    for limit, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if count >= limit:
            return f"{count / limit:.3g} {suffix}"
    return f"{count:.0f} B"


def fmt_fraction(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


# ---------------------------------------------------------------- tables


def results_rows(results: list[StrategyResult]) -> tuple[list[str], list[list[str]]]:
    """Header and one row of display text per strategy x fraction."""
    header = [
        "Strategy",
        "Training data",
        "Runs",
        f"Val {results[0].metric} (mean ± std)",
        "Trainable params",
        "Train time",
        "Time/epoch",
        "Peak memory",
        "Checkpoint",
    ]
    rows = [
        [
            label(r),
            f"{fmt_fraction(r.train_fraction)} ({r.train_examples:.0f} examples)",
            str(r.n_runs),
            f"{fmt_metric(r.score_mean)} ± {fmt_metric(r.score_std)}",
            f"{fmt_params(r.trainable_params)} ({r.trainable_percent:.3g}%)",
            fmt_seconds(r.train_seconds_mean),
            fmt_seconds(r.seconds_per_epoch_mean),
            f"{r.peak_memory_mb_max:.0f} MB",
            fmt_bytes(r.checkpoint_bytes_mean),
        ]
        for r in results
    ]
    return header, rows


def benefit_rows(table: list[TransferBenefit]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the three-benefits table; the 'vs scratch' columns only when scratch was run."""
    header = ["Strategy", "Start (epoch 1)", "Slope (per epoch, first 3)", "Asymptote (best)"]
    with_scratch = any(b.strategy.split(":")[0] == SCRATCH for b in table)
    if with_scratch:
        header += ["Δ start vs scratch", "Δ slope vs scratch", "Δ asymptote vs scratch"]
    rows = []
    for b in table:
        row = [b.strategy, fmt_metric(b.start), fmt_gain(b.slope), fmt_metric(b.asymptote)]
        if with_scratch:
            row += [fmt_gain(b.start_gain), fmt_gain(b.slope_gain), fmt_gain(b.asymptote_gain)]
        rows.append(row)
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *map(line, rows)]) + "\n"


def render_markdown(title: str, results: list[StrategyResult], table: list[TransferBenefit]) -> str:
    """results.md: the results table to paste anywhere, the three-benefits table and the conclusion."""
    examples = at_fraction(results, largest_fraction(results))[0].train_examples
    parts = [
        f"# {title}\n",
        _markdown_table(*results_rows(results), 2),
        f"{MARKS['best']} best, {MARKS['cheapest_near_best']} cheapest within noise of the best.\n",
        f"## Three benefits of transfer ({examples:.0f} training examples)\n",
        _markdown_table(*benefit_rows(table), 1),
        "## Conclusion\n",
        "".join(f"- {sentence}\n" for sentence in conclusion(results, table)),
        NOTES + "\n",
    ]
    return "\n".join(parts)


def _html_table(
    header: list[str], rows: list[list[str]], table_id: str, text_columns: int, classes: list[str] | None = None
) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        attribute = ' class="text"' if i < text_columns else ""
        return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if classes and classes[n] else ""
        body.append(f"<tr{cls}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table>"


# ---------------------------------------------------------------- the conclusion


def _is_scratch(r: StrategyResult | TransferBenefit) -> bool:
    return r.strategy.split(":")[0] == SCRATCH


def _more(value: float, more: str, less: str, unit: str = "") -> str:
    if value == 0:
        return "the same"
    return f"{abs(value):.3f}{unit} {more if value > 0 else less}"


def _where(r: StrategyResult, several: bool) -> str:
    if several:
        return f"At {r.train_examples:.0f} training examples ({fmt_fraction(r.train_fraction)} of the data)"
    return f"On {r.train_examples:.0f} training examples"


def conclusion(results: list[StrategyResult], table: list[TransferBenefit]) -> list[str]:
    """Plain-language findings, each number taken from `results`.

    In order: the best, the cheapest near the best, transfer against scratch, and how the data size changed that.
    """
    fractions = sorted({r.train_fraction for r in results})
    top = at_fraction(results, fractions[-1])
    metric = top[0].metric
    best = next(r for r in top if r.best)
    cheap = next(r for r in top if r.cheapest_near_best)
    runs = f"{best.n_runs} run{'s' * (best.n_runs > 1)}"
    said = [
        f"{_where(best, len(fractions) > 1)}, {best.strategy} scored best: mean validation {metric} "
        + f"{fmt_metric(best.score_mean)} ± {fmt_metric(best.score_std)} over {runs}"
    ]
    if len(top) == 1:
        said[0] += "; it was the only strategy run."
    else:
        runner = max((r for r in top if r is not best), key=lambda r: r.score_mean)
        gap = best.score_mean - runner.score_mean
        said[0] += f", {gap:.3f} above the runner-up {runner.strategy} ({fmt_metric(runner.score_mean)})."
        if max(r.n_runs for r in top) == 1:
            said[0] += (
                " With one run per strategy there is no estimate of run-to-run noise; repeat with --seeds 3 "
                "(or --folds 5) before trusting small differences."
            )
        elif gap < max(best.score_std, runner.score_std):
            said[0] += " That gap is smaller than the run-to-run standard deviation, so the two are hard to tell apart."
        if cheap is best:
            said.append(
                f"No strategy within noise of {best.strategy} trained faster, so it is also the cheapest good "
                f"choice ({fmt_seconds(best.train_seconds_mean)} of training per run)."
            )
        else:
            ratio = best.train_seconds_mean / max(cheap.train_seconds_mean, 1e-9)
            said.append(
                f"{cheap.strategy} is the cheapest strategy within noise of the best: {fmt_metric(cheap.score_mean)}, "
                f"{best.score_mean - cheap.score_mean:.3f} below {best.strategy} "
                f"(within its ± {fmt_metric(best.score_std)}), "
                f"in {fmt_seconds(cheap.train_seconds_mean)} of training "
                f"instead of {fmt_seconds(best.train_seconds_mean)} "
                f"({ratio:.1f}× less), with {fmt_params(cheap.trainable_params)} trainable parameters instead of "
                f"{fmt_params(best.trainable_params)}."
            )
    said.extend(_transfer_sentences(results, table, fractions))
    return said


def _transfer_sentences(
    results: list[StrategyResult], table: list[TransferBenefit], fractions: list[float]
) -> list[str]:
    top = at_fraction(results, fractions[-1])
    if not any(_is_scratch(r) for r in top):
        return ["Scratch was not run, so what transfer buys cannot be measured; add scratch to --strategies."]
    transfer = [r for r in top if not _is_scratch(r)]
    if not transfer:
        return []
    lead = max(transfer, key=lambda r: r.score_mean)
    b = next(row for row in table if row.strategy == lead.strategy)
    s = next(row for row in table if _is_scratch(row))
    slope = (
        "with a single epoch there is no slope to compare"
        if b.slope_gain is None
        else f"climbed {_more(b.slope_gain, 'faster', 'slower', ' per epoch')} over the first epochs "
        f"({fmt_gain(b.slope)} vs {fmt_gain(s.slope)})"
    )
    said = [
        (
            f"Against training from scratch, {lead.strategy} (the best transferring strategy) started "
            f"{_more(b.start_gain, 'higher', 'lower')} after the first epoch "
            f"({fmt_metric(b.start)} vs {fmt_metric(s.start)}), "
            f"{slope}, and reached a best epoch {_more(b.asymptote_gain, 'higher', 'lower')} "
            f"({fmt_metric(b.asymptote)} vs {fmt_metric(s.asymptote)})."
        )
    ]
    if b.slope_gain is not None and b.slope_gain < 0 < b.start_gain:
        said[0] += " A slower climb is expected when transfer already starts high."
    if len(fractions) < 2:
        return said
    margins = []
    for fraction in fractions:
        group = at_fraction(results, fraction)
        base = next((r for r in group if _is_scratch(r)), None)
        others = [r for r in group if not _is_scratch(r)]
        if base is not None and others:
            winner = max(others, key=lambda r: r.score_mean)
            margins.append((winner.score_mean - base.score_mean, winner, base))
    if len(margins) < 2:
        return said
    listed = ", ".join(f"{w.train_examples:.0f} examples {gain:+.3f}" for gain, w, _ in margins)
    gain, winner, base = max(margins, key=lambda m: m[0])
    if gain <= 0:
        said.append(
            f"Scratch matched or beat every transferring strategy at every training-set size (best margin of "
            f"transfer over scratch: {listed})."
        )
    else:
        said.append(
            f"Transfer helped most at {winner.train_examples:.0f} training examples "
            f"({fmt_fraction(winner.train_fraction)} of the data), where {winner.strategy} beat scratch by "
            f"{gain:.3f} ({fmt_metric(winner.score_mean)} vs {fmt_metric(base.score_mean)}). Best margin of "
            f"transfer over scratch by training-set size: {listed}."
        )
    return said


# ---------------------------------------------------------------- the page


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, so the page reserves the right space before the image decodes."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def _figure(name: str, png: bytes, metric: str) -> str:
    width, height = png_size(png)
    caption = html.escape(CAPTIONS.get(name, name).format(metric=metric))
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}" width="{width}" height="{height}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def render_html(
    title: str, results: list[StrategyResult], table: list[TransferBenefit], plots: dict[str, bytes]
) -> str:
    """One self-contained page: no scripts, no external references; plots embedded as data URIs."""
    metric = results[0].metric
    fractions = sorted({r.train_fraction for r in results})
    runs = sum(r.n_runs for r in results)
    specs = len({r.strategy for r in results})
    meta = (
        f"{runs} runs: {specs} strategies × {len(fractions)} training-set size{'s' * (len(fractions) > 1)}; "
        f"score = validation {metric} of each run's best epoch."
    )
    classes = ["best" if r.best else "" for r in results]
    classes = [
        c + (" split" if i and r.train_fraction != results[i - 1].train_fraction else "")
        for i, (c, r) in enumerate(zip(classes, results))
    ]
    examples = at_fraction(results, fractions[-1])[0].train_examples
    order = [name for name in CAPTIONS if name in plots] + [name for name in plots if name not in CAPTIONS]
    body = "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{html.escape(meta)}</p>',
            "<h2>Conclusion</h2>",
            '<ul class="conclusion">',
            *(f"<li>{html.escape(sentence)}</li>" for sentence in conclusion(results, table)),
            "</ul>",
            "<h2>Results</h2>",
            _html_table(*results_rows(results), "results", 2, [c.strip() for c in classes]),
            f'<p class="note">{html.escape(NOTES)}</p>',
            "<h2>Plots</h2>",
            *(_figure(name, plots[name], metric) for name in order),
            f"<h2>Three benefits of transfer ({examples:.0f} training examples)</h2>",
            _html_table(*benefit_rows(table), "benefits", 1),
        ]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
