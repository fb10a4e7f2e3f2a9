"""Compare strategies side by side on equal budgets: strategies x seeds (x folds) (x data fractions) -> report.

Every comparison run is an ordinary run directory under `<out>/runs/`, so it can be evaluated, used for
prediction, or rebuilt into a report with `tunelab report`. A compare that is interrupted and started again
with the same `--out` skips the runs that finished and resumes the one that was cut off.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.runs.rundir import RunDir
from tunelab.settings import CompareConfig, TrainConfig, shared_settings
from tunelab.strategies import REGISTRY, parse_strategy


def slug(spec: str) -> str:
    """A folder name for a strategy spec: 'retrain:4' -> 'retrain-4'. Letters, digits, '-' and inner dots only,
    so no spec can name a path outside the comparison's folder ('..', '/')."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", spec).strip("-.") or "run"


def strategy_specs(config: CompareConfig) -> tuple[str, ...]:
    """The strategy specs to compare: --strategies, or when it is not given every registered strategy."""
    specs = tuple(REGISTRY) if config.strategies is None else config.strategies
    if not specs:
        raise TunelabError("--strategies is empty: name at least one strategy, or leave it out to compare all")
    return specs


def learning_rates(config: CompareConfig) -> dict[str, float]:
    """Parse the spec=lr overrides; every named spec must be one of the compared strategies."""
    specs = strategy_specs(config)
    rates = {}
    for item in config.lrs:
        spec, sep, value = item.rpartition("=")
        if not sep or spec not in specs:
            raise TunelabError(
                f"--lrs item '{item}': expected <strategy>=<lr> with a strategy from --strategies ({', '.join(specs)})"
            )
        try:
            rates[spec] = float(value)
        except ValueError:
            raise TunelabError(f"--lrs item '{item}': '{value}' is not a number") from None
    return rates


def planned_runs(config: CompareConfig) -> list[TrainConfig]:
    """One TrainConfig per (fraction, seed, fold, strategy): the whole comparison, in the order it runs.

    Every setting group CompareConfig shares with TrainConfig reaches each run unchanged; only the per-run
    fields (strategy, seed, fold, train fraction, run folder, resume) and a --lrs override differ.
    """
    specs = strategy_specs(config)
    for spec in specs:
        parse_strategy(spec)  # fail on a bad spec before hours of training
    if len(set(specs)) != len(specs):
        raise TunelabError(f"--strategies lists a strategy twice: {', '.join(specs)}")
    if config.seeds < 1:
        raise TunelabError(f"--seeds must be at least 1, got {config.seeds}")
    rates = learning_rates(config)
    shared = shared_settings(config, TrainConfig)
    folds = range(config.folds) if config.folds else [None]
    runs = []
    # Seed-major order: an interrupted comparison already holds every strategy for its first seeds.
    for fraction in config.data_fractions:
        for seed in range(config.seeds):
            for fold in folds:
                for spec in specs:
                    name = f"s{seed}" + ("" if fold is None else f"-fold{fold}")
                    out = Path(config.out) / "runs" / f"fraction-{fraction:g}" / slug(spec) / name
                    per_run = {
                        "strategy": spec,
                        "lr": rates.get(spec, config.lr),
                        "seed": seed,
                        "fold": 0 if fold is None else fold,
                        "train_fraction": fraction,
                        "out": str(out),
                        "resume": (out / "checkpoint" / "latest").is_file(),
                    }
                    runs.append(TrainConfig(**{**shared, **per_run}))
    return runs


def compare(config: CompareConfig) -> Path:
    """Run (or finish) every planned run, then write the report; returns the path of report.html."""
    from tunelab.comparison.report import report_from_runs
    from tunelab.runs.loop import train

    runs = planned_runs(config)
    for i, run in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {run.strategy}, seed {run.seed}" + (f", fold {run.fold}" if run.folds else "")
        label += f", {run.train_fraction:g} of the training data" if len(config.data_fractions) > 1 else ""
        if RunDir(Path(run.out)).complete:
            print(f"{label}: done before, skipped", file=sys.stderr)
            continue
        print(f"{label}{' (resuming)' if run.resume else ''}", file=sys.stderr)
        train(run)
    report = report_from_runs([Path(run.out) for run in runs], Path(config.out))
    print(f"report: {report}", file=sys.stderr)
    return report
