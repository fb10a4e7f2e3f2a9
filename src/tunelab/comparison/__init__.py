"""Comparing strategies on equal budgets, and the report that shows the comparison.

    grid.py      the grid of runs (strategies x seeds x folds x data fractions) and `compare()`, which trains them
    results.py   collecting finished run directories and aggregating them: the dataclasses and the numbers
    plots.py     the report's PNG plots (matplotlib, loaded when a plot is drawn)
    html.py      the report as text: Markdown and HTML tables, the conclusion, the self-contained page
    report.py    writing the report files: results.csv, results.md, the plots, report.html

Imports inside run one way: grid -> report -> html -> plots -> results. This package imports nothing on its
own, so importing one of its modules (advise reads `results`) does not load the others.

May import: embed, export, runs, tasks, data, strategies, models, settings, fileio, errors.
"""
