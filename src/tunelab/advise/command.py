"""The `tunelab advise` command: its settings, the measurement, and the optional check by a short compare.

`--verify` trains the recommendation and the runner-up on the same data and budget (an ordinary
`compare`, so the runs are kept and reportable) and says whether the recommended strategy scored at least
as well, within the runner-up's noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.advise.decide import Advice, Thresholds, advise
from tunelab.compare.grid import CompareConfig, compare, planned_runs
from tunelab.compare.results import aggregate, collect


@dataclass(frozen=True)
class AdviseConfig:
    """Everything `tunelab advise` needs."""

    model: str
    """Model: zoo name (see `tunelab models`), timm:<name>, hf:<id>, a model directory or a run directory."""
    data: str = ""
    """Labelled data path: an image folder tree or a text file (CSV/TSV/JSONL)."""
    val_data: str | None = None
    """Validation data path (pooled with the training data for the profile)."""
    task: str = "auto"
    """Task: auto (guessed from the data), image-classification or text-classification."""
    max_examples: int = 1000
    """Measure on a stratified sample of at most this many examples."""
    budget_params: int | None = None
    """Most trainable parameters you can afford; strategies over it are replaced by cheaper ones."""
    budget_memory_mb: float | None = None
    """Most training memory (weights, gradients, optimizer state) you can afford, in MB."""
    small_per_class: int = Thresholds.small_per_class
    """Median examples per class below which the data counts as small."""
    similar_logme_gain: float = Thresholds.similar_logme_gain
    """LogME gain of pretrained over random-init features above which the data counts as similar."""
    transfer_drop: float = Thresholds.transfer_drop
    """Fall of per-block LogME below its peak at which features stop transferring (sets K of retrain:K)."""
    text_column: str | None = None
    """Text column of a table; none = detected from the header."""
    label_column: str = "label"
    """Label column of a table."""
    seed: int = 0
    """Seed for the sample and the verification runs."""
    verify: bool = False
    """Also train the recommendation and the runner-up briefly and report whether the advice held."""
    verify_epochs: int = 3
    """Epochs for each verification run."""
    out: str = "runs/advise"
    """Where verification runs and their report go."""


def run_advise(config: AdviseConfig) -> dict:
    """The advice as JSON-ready data, with a `verification` entry when config.verify is set."""
    thresholds = Thresholds(
        small_per_class=config.small_per_class,
        similar_logme_gain=config.similar_logme_gain,
        transfer_drop=config.transfer_drop,
    )
    advice = advise(
        config.model, config.data, val_data=config.val_data, task=config.task, max_examples=config.max_examples,
        budget_params=config.budget_params, budget_memory_mb=config.budget_memory_mb, thresholds=thresholds,
        seed=config.seed, text_column=config.text_column, label_column=config.label_column,
    )
    result = {"advice": advice.to_dict(), "text": advice.format()}
    if config.verify:
        result["verification"] = verify(advice, config)
    return result


def verify(advice: Advice, config: AdviseConfig) -> dict:
    """Train the top two strategies on equal budgets and compare their validation scores."""
    specs = tuple(dict.fromkeys([advice.recommendation, advice.runner_up]))
    plan = CompareConfig(
        model=config.model, data=config.data, val_data=config.val_data, out=config.out, strategies=specs,
        epochs=config.verify_epochs, task=config.task, text_column=config.text_column, label_column=config.label_column,
    )
    report = compare(plan)
    results = {r.strategy: r for r in aggregate(collect([Path(run.out) for run in planned_runs(plan)]))}
    rec, runner = results[specs[0]], results[specs[-1]]
    confirmed = rec.score_mean >= runner.score_mean - runner.score_std
    return {
        "scores": {s: results[s].score_mean for s in specs},
        "train_seconds": {s: results[s].train_seconds_mean for s in specs},
        "confirmed": confirmed,
        "summary": f"{specs[0]} scored {rec.score_mean:.4f} vs {specs[-1]} {runner.score_mean:.4f} after "
        f"{config.verify_epochs} epochs: the advice {'held' if confirmed else 'did not hold'}",
        "report": str(report),
    }
