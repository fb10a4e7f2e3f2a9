"""Writing a comparison report: results.csv, results.md, the PNG plots and a self-contained report.html.

The top of the report's one-way chain: results.py holds the numbers, plots.py draws them, conclusion.py
and html.py write them as text, and this module puts the files on disk. Every file is written atomically,
so an interrupted report leaves each file whole (old or new).

May import: comparison.results, comparison.html, comparison.plots, fileio, errors.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from tunelab.comparison.html import render_html, render_markdown
from tunelab.comparison.paired import MARGIN
from tunelab.comparison.plots import render_plots
from tunelab.comparison.results import (
    FailedRun,
    Paired,
    RunFlag,
    RunRecord,
    StrategyResult,
    aggregate,
    benefit_table,
    collect,
)
from tunelab.errors import TunelabError
from tunelab.fileio import atomic_write_bytes, atomic_write_text

PAIRED_COLUMNS = ("n", "mean", "low", "high", "verdict")
"""Fields of the paired comparison with the best, written as vs_best_<field> columns."""


def _csv_value(value: object) -> object:
    """A CSV cell: numbers as they are, curves as space-separated values, flags as 'flag@seed[/fold]' items."""
    if value is None:
        return ""
    if isinstance(value, tuple) and value and isinstance(value[0], RunFlag):
        return "; ".join(f"{f.flag}@{f.seed}" + ("" if f.fold is None else f"/{f.fold}") for f in value)
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):  # run_scores: (seed, fold, score)
        return "; ".join(f"{seed}/{'' if fold is None else fold}/{score!r}" for seed, fold, score in value)
    if isinstance(value, tuple):
        return " ".join(repr(v) for v in value)
    return value


def results_csv(results: Sequence[StrategyResult], failed: Sequence[FailedRun] = ()) -> str:
    """One row per strategy x fraction with every aggregated number, then one row per failed run.

    Curves are space-separated values; the paired comparison with the best is spread over vs_best_* columns;
    a failed run's row has status 'failed', its strategy, fraction, seed, fold and reason, and no numbers.
    """
    names = [f.name for f in fields(StrategyResult) if f.name != "vs_best"]
    header = ["status", *names, *(f"vs_best_{name}" for name in PAIRED_COLUMNS), "seed", "fold", "reason"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for r in results:
        paired: Paired | None = r.vs_best
        versus = [_csv_value(getattr(paired, name)) if paired else "" for name in PAIRED_COLUMNS]
        writer.writerow(["finished", *(_csv_value(getattr(r, name)) for name in names), *versus, "", "", ""])
    for f in failed:
        row = dict.fromkeys(header, "")
        row.update(status="failed", strategy=f.strategy, train_fraction=f.train_fraction, reason=f.reason)
        row.update(seed=f.seed, fold="" if f.fold is None else f.fold)
        writer.writerow([row[name] for name in header])
    return buffer.getvalue()


def write_report(
    records: Sequence[RunRecord],
    out_dir: Path,
    title: str,
    failed: Sequence[FailedRun] = (),
    margin: float = MARGIN,
) -> Path:
    """Write results.csv, results.md, the PNG plots and a self-contained report.html into `out_dir`.

    `failed` runs appear in the tables, marked, with their reasons, and count in no mean; `margin` is the
    paired rule's (`paired.rule`). Returns the path of report.html.
    """
    if not records:
        reasons = "; ".join(f"{f.strategy} seed {f.seed}: {f.reason}" for f in failed[:3])
        raise TunelabError("no finished runs to report on" + (f": every run failed ({reasons})" if failed else ""))
    out_dir = Path(out_dir)
    results = aggregate(records, failed, margin)
    table = benefit_table(results)
    plots = render_plots(results)
    atomic_write_text(out_dir / "results.csv", results_csv(results, failed))
    atomic_write_text(out_dir / "results.md", render_markdown(title, results, table, failed))
    for name, png in plots.items():
        atomic_write_bytes(out_dir / name, png)
    if "data_fractions.png" not in plots:  # a plot left by an earlier report over other runs would be stale
        (out_dir / "data_fractions.png").unlink(missing_ok=True)
    page = out_dir / "report.html"
    atomic_write_text(page, render_html(title, results, table, plots, failed))
    return page


def report_title(records: Sequence[RunRecord]) -> str:
    """'<model> on <data folder or file name>: transfer strategies compared'."""
    first = records[0]
    data = Path(first.data).name or first.data
    subject = f"{first.model} on {data}" if data else first.model
    return f"{subject}: transfer strategies compared"


def report_from_runs(
    paths: Sequence[Path], out_dir: Path, failed: Sequence[FailedRun] = (), margin: float = MARGIN
) -> Path:
    """Collect the runs in `paths` (run directories or folders above them) and write the report into `out_dir`.

    `failed`: runs of the comparison that did not finish (the compare command knows which and why); their
    directories are not read, even when they are among or below `paths`.
    """
    lost = {Path(f.path).resolve() for f in failed}
    records = collect([Path(p) for p in paths if Path(p).resolve() not in lost], skip=lost)
    return write_report(records, Path(out_dir), report_title(records) if records else "", failed, margin)
