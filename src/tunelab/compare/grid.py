"""Compare strategies side by side on equal budgets: strategies x seeds (x folds) (x data fractions) -> report.

Every comparison run is an ordinary run directory under `<out>/runs/`, so it can be evaluated, used for
prediction, or rebuilt into a report with `tunelab report`. A compare that is interrupted and started again
with the same `--out` skips the runs that finished and resumes the one that was cut off.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from tunelab.settings.fields import TrainConfig
from tunelab.errors import TunelabError
from tunelab.runs.rundir import RunDir
from tunelab.strategies import parse_strategy

ALL_STRATEGIES = ("none", "full", "retrain", "adapter", "lora", "scratch")


@dataclass(frozen=True)
class CompareConfig:
    """Everything `tunelab compare` needs; the shared settings mean what they mean for `tunelab train`."""

    model: str
    """Model: zoo name (see `tunelab models`), timm:<name>, hf:<id>, a model directory or a run directory."""
    data: str = ""
    """Training data path: an image folder tree or a text file (CSV/TSV/JSONL)."""
    val_data: str | None = None
    """Validation data path; none = split val_fraction off the training data."""
    out: str = "runs/compare"
    """Output directory: the runs (under runs/), results.csv/.md, plots and report.html."""
    strategies: tuple[str, ...] = ALL_STRATEGIES
    """Strategy specs to compare, comma-separated, e.g. none,full,retrain:4,adapter,lora:8,scratch."""
    epochs: int = 5
    """Passes over the training data, the same for every strategy."""
    seeds: int = 1
    """Repetitions with seeds 0 .. seeds-1 (mean and std are reported)."""
    folds: int | None = None
    """Stratified K-fold cross-validation over train+val instead of one fixed split; none = off."""
    data_fractions: tuple[float, ...] = (1.0,)
    """Training-set fractions to compare at, e.g. 0.1,0.3,1.0 (stratified subsets, same validation set)."""
    lrs: tuple[str, ...] = ()
    """Per-strategy head learning rates as spec=lr, e.g. scratch=3e-3,full=5e-4; others use their defaults."""
    task: str = "auto"
    """Task: auto (guessed from the data), image-, text-, token- (NER) or relation-classification."""
    batch_size: int = 32
    """Examples per optimisation step."""
    augment: bool | None = None
    """Image train augmentation for every run; unset = each strategy's automatic choice."""
    max_length: int | None = None
    """Tokens per text example; none = the model's default."""
    text_column: str | None = None
    """Text column of a table; none = detected from the header."""
    label_column: str = "label"
    """Label column of a table."""
    val_fraction: float = 0.2
    """Fraction of the training data held out for validation when no val_data is given."""
    num_workers: int = 0
    """Data loader worker processes; 0 = load in the main process."""
    trust_remote_code: bool = False
    """Let a Hugging Face model run the Python code it ships (command line only; off by default)."""
    adversarial: str | None = None
    """Adversarial training on the word embeddings for every run: fgm or pgd; none = off."""
    adv_epsilon: float = 1.0
    """L2 size of the adversarial perturbation of the embedding rows a batch uses."""
    adv_steps: int = 3
    """PGD: attack steps per batch (FGM takes one)."""


def slug(spec: str) -> str:
    """A folder name for a strategy spec: 'retrain:4' -> 'retrain-4'. Letters, digits, '-' and inner dots only,
    so no spec can name a path outside the comparison's folder ('..', '/')."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", spec).strip("-.") or "run"


def learning_rates(config: CompareConfig) -> dict[str, float]:
    """Parse the spec=lr overrides; every named spec must be one of the compared strategies."""
    rates = {}
    for item in config.lrs:
        spec, sep, value = item.rpartition("=")
        if not sep or spec not in config.strategies:
            raise TunelabError(f"--lrs item '{item}': expected <strategy>=<lr> with a strategy from --strategies ({', '.join(config.strategies)})")
        try:
            rates[spec] = float(value)
        except ValueError:
            raise TunelabError(f"--lrs item '{item}': '{value}' is not a number") from None
    return rates


def planned_runs(config: CompareConfig) -> list[TrainConfig]:
    """One TrainConfig per (fraction, seed, fold, strategy): the whole comparison, in the order it runs."""
    for spec in config.strategies:
        parse_strategy(spec)  # fail on a bad spec before hours of training
    if len(set(config.strategies)) != len(config.strategies):
        raise TunelabError(f"--strategies lists a strategy twice: {', '.join(config.strategies)}")
    if config.seeds < 1:
        raise TunelabError(f"--seeds must be at least 1, got {config.seeds}")
    rates = learning_rates(config)
    folds = range(config.folds) if config.folds else [None]
    runs = []
    # Seed-major order: an interrupted comparison already holds every strategy for its first seeds.
    for fraction in config.data_fractions:
        for seed in range(config.seeds):
            for fold in folds:
                for spec in config.strategies:
                    name = f"s{seed}" + ("" if fold is None else f"-fold{fold}")
                    out = Path(config.out) / "runs" / f"fraction-{fraction:g}" / slug(spec) / name
                    runs.append(
                        TrainConfig(
                            model=config.model, strategy=spec, data=config.data, val_data=config.val_data, out=str(out),
                            task=config.task, epochs=config.epochs, batch_size=config.batch_size, lr=rates.get(spec),
                            seed=seed, augment=config.augment, max_length=config.max_length,
                            text_column=config.text_column, label_column=config.label_column,
                            val_fraction=config.val_fraction, train_fraction=fraction, folds=config.folds,
                            fold=0 if fold is None else fold, num_workers=config.num_workers,
                            trust_remote_code=config.trust_remote_code,
                            adversarial=config.adversarial, adv_epsilon=config.adv_epsilon, adv_steps=config.adv_steps,
                            resume=(out / "checkpoint" / "latest").is_file(),
                        )
                    )
    return runs


def compare(config: CompareConfig) -> Path:
    """Run (or finish) every planned run, then write the report; returns the path of report.html."""
    from tunelab.compare.results import report_from_runs
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
