"""Writing a comparison report: results.csv, results.md, the PNG plots and a self-contained report.html.

The top of the report's one-way chain: results.py holds the numbers, plots.py draws them, html.py writes
them as text, and this module puts the files on disk. Every file is written atomically, so an interrupted
report leaves each file whole (old or new).

May import: compare.results, compare.html, compare.plots, fileio, errors.
"""

from __future__ import annotations

import csv
import io
from dataclasses import fields
from pathlib import Path

from tunelab.comparison.html import render_html, render_markdown
from tunelab.comparison.plots import render_plots
from tunelab.comparison.results import RunRecord, StrategyResult, aggregate, benefit_table, collect
from tunelab.errors import TunelabError
from tunelab.fileio import atomic_write_bytes, atomic_write_text


def results_csv(results: list[StrategyResult]) -> str:
    """One row per strategy x fraction with every aggregated number (curves as space-separated values)."""
    names = [f.name for f in fields(StrategyResult)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for r in results:
        row = []
        for name in names:
            value = getattr(r, name)
            row.append(" ".join(repr(v) for v in value) if isinstance(value, tuple) else value)
        writer.writerow(row)
    return buffer.getvalue()


def write_report(records: list[RunRecord], out_dir: Path, title: str) -> Path:
    """Write results.csv, results.md, the PNG plots and a self-contained report.html into `out_dir`.

    Returns the path of report.html.
    """
    if not records:
        raise TunelabError("no finished runs to report on")
    out_dir = Path(out_dir)
    results = aggregate(records)
    table = benefit_table(results)
    plots = render_plots(results)
    atomic_write_text(out_dir / "results.csv", results_csv(results))
    atomic_write_text(out_dir / "results.md", render_markdown(title, results, table))
    for name, png in plots.items():
        atomic_write_bytes(out_dir / name, png)
    if "data_fractions.png" not in plots:  # a plot left by an earlier report over other runs would be stale
        (out_dir / "data_fractions.png").unlink(missing_ok=True)
    page = out_dir / "report.html"
    atomic_write_text(page, render_html(title, results, table, plots))
    return page


def report_title(records: list[RunRecord]) -> str:
    """'<model> on <data folder or file name>: transfer strategies compared'."""
    first = records[0]
    data = Path(first.data).name or first.data
    subject = f"{first.model} on {data}" if data else first.model
    return f"{subject}: transfer strategies compared"


def report_from_runs(paths: list[Path], out_dir: Path) -> Path:
    """Collect the runs in `paths` (run directories or folders above them) and write the report into `out_dir`."""
    records = collect(paths)
    if not records:
        raise TunelabError("no finished runs to report on")
    return write_report(records, Path(out_dir), report_title(records))
