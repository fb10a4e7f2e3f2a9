"""The report as text: the tables (Markdown and HTML) and one self-contained page.

Both formats are built from the same `Table` rows and the same sentences (conclusion.py), so results.md
and report.html always show the same numbers. The page embeds its plots as base64 data URIs and its CSS
inline, and needs no JavaScript: it can be mailed, archived or opened offline and shows the same thing
years later.

May import: comparison.results (the numbers), comparison.paired (the rule), comparison.conclusion (the
words), comparison.plots (the strategy labels and marks the plots also show).
"""

from __future__ import annotations

import base64
import html
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from tunelab.comparison.conclusion import (
    conclusion,
    failed_lines,
    flag_lines,
    fmt_augment,
    fmt_bytes,
    fmt_cached,
    fmt_flags,
    fmt_fraction,
    fmt_gain,
    fmt_metric,
    fmt_params,
    fmt_score,
    fmt_seconds,
    fmt_vs_best,
    meta_line,
    run_name,
    warnings,
)
from tunelab.comparison.paired import MARGIN, rule
from tunelab.comparison.plots import MARKS, label, score_name
from tunelab.comparison.results import (
    FailedRun,
    StrategyResult,
    TransferBenefit,
    at_fraction,
    is_scratch,
    largest_fraction,
    scratch_baseline,
    strategy_order,
)

CAPTIONS = {
    "learning_curves.png": "Validation {metric} after each epoch, mean over runs (band: ±1 std, clipped to [0, 1]); "
    "scratch is dashed.",
    "cost_vs_metric.png": "Mean training time per run (log scale) against the mean {score}; error bars: ±1 std over "
    "runs, clipped to [0, 1].",
    "data_fractions.png": "Mean {score} against the number of training examples (log scale); error bars: ±1 std, "
    "clipped to [0, 1].",
}
"""Figure captions by file name, in page order."""

LEGEND = (
    f"{MARKS['best']} highest mean score at a training-set size; {MARKS['within_noise']} within noise of the best; "
    f"{MARKS['cheapest_near_best']} cheapest within noise of the best; {MARKS['flagged']} a run raised a sanity "
    f"flag; {MARKS['failed']} a failed run (in no mean)."
)
"""What the marks after a strategy's name mean: the line under the results table."""

NOTES = (
    "n = finished runs in the mean; ± is the sample standard deviation over seeds or folds, shown only for n ≥ 2. "
    "Score = each run's score at the epoch with its best validation score (on the test set when the run had one), "
    "averaged over runs; the conclusion quotes these same numbers. vs best = mean paired difference to the best "
    "strategy over the seeds/folds both finished, with its 95% t-interval. Eval n = examples the score was "
    "measured on. Augment and Cached blocks = the training conditions each strategy ran under. Cheapest = least "
    "mean wall-clock training time (ties: fewer trainable parameters); train time is the whole run, feature "
    "caching and evaluation included. Three benefits (Torrey & Shavlik), from each strategy's mean validation "
    "curve: start = after the first epoch; slope = mean gain per epoch over the first three epochs; "
    "asymptote = best epoch of the mean curve."
)
"""How the columns are defined; printed under the tables of both the Markdown and the HTML report."""

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
main{max-width:1400px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
.meta,.note,figcaption{color:#555;font-size:.9em}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:6px 12px;margin:.5em 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{padding:4px 8px;border-bottom:1px solid #e4e4e4;text-align:right;white-space:nowrap}
th{background:#f2f2f4;border-bottom:2px solid #ccc}.text{text-align:left}
tr.best td{font-weight:600}tr.split td{border-top:2px solid #bbb}tr.failed td{color:#a11}
ul.conclusion li{margin:.35em 0}
figure{margin:1.2em 0}img{max-width:100%;height:auto;border:1px solid #eee}
"""
"""The page's whole style sheet, inlined so the file stands alone."""

FAILED_REASON_WIDTH = 90
"""Characters of a failure's reason shown in the table; the whole reason is listed under Failed runs."""


@dataclass(frozen=True)
class Table:
    """A table as display text, the one source of both the Markdown and the HTML version."""

    header: list[str]
    """Column titles."""
    rows: list[list[str]]
    """One list of cells per row."""
    text_columns: frozenset[int]
    """Columns aligned left (text); the others are numbers, aligned right."""
    classes: list[str]
    """Per row, the HTML classes: 'best', 'failed', 'split' (first row of a new training-set size)."""


# ---------------------------------------------------------------- tables


def results_table(results: Sequence[StrategyResult], failed: Sequence[FailedRun] = ()) -> Table:
    """One row per strategy x fraction, and one per failed run right after its strategy's row.

    Flags come right after the score, so a flag or a failure's reason is seen without scrolling sideways.
    """
    header = [
        "Strategy",
        "Training data",
        "n",
        f"{score_name(list(results))} (mean ± std)",
        "vs best (paired 95% CI)",
        "Flags",
        "Eval n",
        "Scored on",
        "Augment",
        "Cached blocks",
        "Trainable params",
        "Train time",
        "Time/epoch",
        "Peak memory",
        "Checkpoint",
    ]
    rows, classes = [], []
    fractions = sorted({r.train_fraction for r in results} | {f.train_fraction for f in failed})
    for fraction in fractions:
        group = {r.strategy: r for r in at_fraction(results, fraction)}
        lost = [f for f in failed if f.train_fraction == fraction]
        first = True
        for spec in sorted(set(group) | {f.strategy for f in lost}, key=strategy_order):
            lines = [(_result_cells(group[spec]), "best" if group[spec].best else "")] if spec in group else []
            lines += [(_failed_cells(f, len(header)), "failed") for f in lost if f.strategy == spec]
            for cells, cls in lines:
                split = "split" if first and rows else ""
                rows.append(cells)
                classes.append(" ".join(c for c in (cls, split) if c))
                first = False
    text = frozenset(
        i for i, name in enumerate(header) if name in ("Strategy", "Training data", "Scored on", "Augment", "Flags")
    )
    return Table(header, rows, text, classes)


def _result_cells(r: StrategyResult) -> list[str]:
    return [
        label(r),
        f"{fmt_fraction(r.train_fraction)} ({r.train_examples:.0f} examples)",
        str(r.n_runs) + (f" (+{r.n_failed} failed)" if r.n_failed else ""),
        fmt_score(r),
        fmt_vs_best(r),
        fmt_flags(r),
        f"{r.eval_examples:.0f}",
        r.scored_on,
        fmt_augment(r.augment),
        fmt_cached(r.cached_blocks),
        f"{fmt_params(r.trainable_params)} ({r.trainable_percent:.3g}%)",
        fmt_seconds(r.train_seconds_mean),
        fmt_seconds(r.seconds_per_epoch_mean),
        f"{r.peak_memory_mb_max:.0f} MB",
        fmt_bytes(r.checkpoint_bytes_mean),
    ]


def _failed_cells(f: FailedRun, width: int) -> list[str]:
    """A failed run's row: marked, no numbers, its reason (shortened) in the Flags column."""
    name = run_name(f.strategy, f.seed, f.fold).removeprefix(f.strategy).strip()
    reason = " ".join(f.reason.split())
    if len(reason) > FAILED_REASON_WIDTH:
        reason = reason[: FAILED_REASON_WIDTH - 1] + "…"
    cells = [f"{f.strategy} {MARKS['failed']} ({name})", fmt_fraction(f.train_fraction), "failed", "failed", "—"]
    return cells + [f"failed: {reason}"] + ["—"] * (width - len(cells) - 1)


def three_benefits_table(table: Sequence[TransferBenefit], results: Sequence[StrategyResult]) -> Table:
    """The three-benefits table; the 'vs scratch' columns when scratch ran (shown as — when it is unusable)."""
    header = ["Strategy", "Start (epoch 1)", "Slope (per epoch, first 3)", "Asymptote (best epoch)"]
    with_scratch = scratch_baseline(results).result is not None
    if with_scratch:
        header += ["Δ start vs scratch", "Δ slope vs scratch", "Δ asymptote vs scratch"]
    rows = []
    for b in table:
        row = [b.strategy, fmt_metric(b.start), fmt_gain(b.slope), fmt_metric(b.asymptote)]
        if with_scratch:
            row += [fmt_gain(b.start_gain), fmt_gain(b.slope_gain), fmt_gain(b.asymptote_gain)]
        rows.append(row)
    return Table(header, rows, frozenset({0}), [""] * len(rows))


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table; '|' inside a cell is escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i in table.text_columns else "---:" for i in range(len(table.header))]
    return "\n".join([line(table.header), "| " + " | ".join(align) + " |", *map(line, table.rows)]) + "\n"


def html_table(table: Table, table_id: str) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        attribute = ' class="text"' if i in table.text_columns else ""
        return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(table.header))
    body = []
    for row, classes in zip(table.rows, table.classes):
        cls = f' class="{classes}"' if classes else ""
        body.append(f"<tr{cls}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _benefits_title(results: Sequence[StrategyResult]) -> str:
    examples = at_fraction(results, largest_fraction(results))[0].train_examples
    return f"Three benefits of transfer ({examples:.0f} training examples, mean validation curves)"


def _benefits_warning(results: Sequence[StrategyResult]) -> str | None:
    baseline = scratch_baseline(results)
    top = at_fraction(results, largest_fraction(results))
    return baseline.warning if any(not is_scratch(r.strategy) for r in top) else None


# ---------------------------------------------------------------- Markdown


def _margin(results: Sequence[StrategyResult]) -> float:
    """The margin the results were judged with (the paired rule's), for the legend that states the rule."""
    return next((r.vs_best.margin for r in results if r.vs_best is not None), MARGIN)


def render_markdown(
    title: str,
    results: Sequence[StrategyResult],
    table: Sequence[TransferBenefit],
    failed: Sequence[FailedRun] = (),
) -> str:
    """results.md: the warnings, the results table to paste anywhere, flags, failures, benefits, conclusion."""
    parts = [f"# {title}\n", meta_line(results, failed) + "\n"]
    parts += [f"> ⚠ {line}\n" for line in warnings(results, failed)]
    parts += [markdown_table(results_table(results, failed)), LEGEND + " " + rule(_margin(results)) + "\n"]
    flags = flag_lines(results)
    if flags:
        parts += ["## Flags\n", "".join(f"- {line}\n" for line in flags)]
    if failed:
        parts += ["## Failed runs\n", "".join(f"- {line}\n" for line in failed_lines(failed))]
    parts.append(f"## {_benefits_title(results)}\n")
    warning = _benefits_warning(results)
    if warning:
        parts.append(f"> ⚠ {warning}\n")
    parts += [
        markdown_table(three_benefits_table(table, results)),
        "## Conclusion\n",
        "".join(f"- {sentence}\n" for sentence in conclusion(results, table)),
        NOTES + "\n",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------- the page


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, so the page reserves the right space before the image decodes."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def _figure(name: str, png: bytes, metric: str, score: str) -> str:
    width, height = png_size(png)
    caption = html.escape(CAPTIONS.get(name, name).format(metric=metric, score=score))
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}" width="{width}" height="{height}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _html_list(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    return [f"<h2>{title}</h2>", "<ul>", *(f"<li>{html.escape(line)}</li>" for line in lines), "</ul>"]


def render_html(
    title: str,
    results: Sequence[StrategyResult],
    table: Sequence[TransferBenefit],
    plots: dict[str, bytes],
    failed: Sequence[FailedRun] = (),
) -> str:
    """One self-contained page: no scripts, no external references; plots embedded as data URIs."""
    metric, score = results[0].metric, score_name(list(results))
    order = [name for name in CAPTIONS if name in plots] + [name for name in plots if name not in CAPTIONS]
    warning = _benefits_warning(results)
    body = "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{html.escape(meta_line(results, failed))}</p>',
            *(f'<p class="warn">⚠ {html.escape(line)}</p>' for line in warnings(results, failed)),
            "<h2>Conclusion</h2>",
            '<ul class="conclusion">',
            *(f"<li>{html.escape(sentence)}</li>" for sentence in conclusion(results, table)),
            "</ul>",
            "<h2>Results</h2>",
            html_table(results_table(results, failed), "results"),
            f'<p class="note">{html.escape(LEGEND)} {html.escape(rule(_margin(results)))}</p>',
            f'<p class="note">{html.escape(NOTES)}</p>',
            *_html_list("Flags", flag_lines(results)),
            *_html_list("Failed runs", failed_lines(failed)),
            "<h2>Plots</h2>",
            *(_figure(name, plots[name], metric, score) for name in order),
            f"<h2>{html.escape(_benefits_title(results))}</h2>",
            *([f'<p class="warn">⚠ {html.escape(warning)}</p>'] if warning else []),
            html_table(three_benefits_table(table, results), "benefits"),
        ]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
