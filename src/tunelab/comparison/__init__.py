"""Comparing strategies on equal budgets, and the report that shows the comparison.

    grid.py      the grid of runs (strategies x seeds x folds x data fractions) and `compare()`, which trains them
    executor.py  one run in its own `tunelab train` process: its flags, its output relayed, how it ended
    records.py   reading finished run directories: RunRecord, RunFlag, FailedRun, collect()
    paired.py    the noise rule: a paired 95% t-interval of the per-(seed, fold) difference to the best
    results.py   aggregating runs per (fraction, strategy): the dataclasses and the numbers, best and within noise
    plots.py     the report's PNG plots (matplotlib, loaded when a plot is drawn)
    conclusion.py  the report's words: number formats, warnings, flags, failures, the conclusion
    html.py      the report as text: Markdown and HTML tables and the self-contained page
    report.py    writing the report files: results.csv, results.md, the plots, report.html

Imports inside run one way: grid -> (executor | report); report -> html -> conclusion -> plots -> results ->
(records | paired). This package imports nothing on its own, so importing one of its modules (advise reads
`results`) does not load the others.

May import: embed, export, runs, tasks, data, strategies, models, settings, fileio, errors.
"""
