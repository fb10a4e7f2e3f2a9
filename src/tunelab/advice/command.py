"""The `tunelab advise` command: the measurement, then the optional check of the advice by a short compare.

`--verify` trains the recommendation and the runner-up on the same data and budget (an ordinary
`compare`, so the runs are kept and reportable) and says whether the recommended strategy scored at least
as well, within the runner-up's noise. The settings (`tunelab.settings.AdviseConfig`) carry the shared
training groups, so the measurement and the verification runs use the data, loop, cache and hardware
settings a user would train with; nothing is copied field by field.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.advice.api import advise
from tunelab.advice.decide import HIT_TOLERANCE, Advice, Thresholds, holds
from tunelab.comparison.grid import compare, planned_runs
from tunelab.comparison.results import aggregate, collect
from tunelab.data import image_pixel_limit
from tunelab.settings import AdviseConfig, CompareConfig, ThresholdSettings, shared_settings


def run_advise(config: AdviseConfig) -> dict:
    """The advice as JSON-ready data, with a `verification` entry when config.verify is set."""
    thresholds = Thresholds(**shared_settings(config, ThresholdSettings))
    with image_pixel_limit(config.max_image_pixels):  # the measured sample's images, like a run's
        advice = advise(
            config.model,
            config.data,
            val_data=config.val_data,
            task=config.task,
            max_examples=config.max_examples,
            control_examples=config.control_examples,
            budget_params=config.budget_params,
            budget_memory_mb=config.budget_memory_mb,
            thresholds=thresholds,
            seed=config.seed,
            batch_size=config.batch_size,
            max_length=config.max_length,
            text_column=config.text_column,
            label_column=config.label_column,
            image_size=config.image_size,
        )
    result = {"advice": advice.to_dict(), "text": advice.format()}
    if config.verify:
        result["verification"] = verify(advice, config)
    return result


def verification_plan(specs: tuple[str, ...], config: AdviseConfig) -> CompareConfig:
    """The compare that checks the advice: `specs` for verify_epochs each, under every shared setting of `config`.

    Every group AdviseConfig shares with CompareConfig (model, data, evaluation, loop, cache, hardware)
    is passed on whole; one seed, as in a default compare.
    """
    return CompareConfig(
        **shared_settings(config, CompareConfig), out=config.out, strategies=specs, epochs=config.verify_epochs
    )


def verify(advice: Advice, config: AdviseConfig) -> dict:
    """Train the top two strategies on equal budgets; the advice holds when the recommendation scores within
    reach of the better of the two (`decide.holds`: 1 point, or that one's seed spread if larger)."""
    specs = tuple(dict.fromkeys([advice.recommendation, advice.runner_up]))
    plan = verification_plan(specs, config)
    report = compare(plan)
    results = {r.strategy: r for r in aggregate(collect([Path(run.out) for run in planned_runs(plan)]))}
    rec = results[specs[0]]
    best = max((results[s] for s in specs), key=lambda r: r.score_mean)
    confirmed = holds(rec.score_mean, best.score_mean, best.score_std or 0.0)
    versus = f" vs {specs[-1]} {results[specs[-1]].score_mean:.4f}" if len(specs) > 1 else " (no runner-up)"
    return {
        "scores": {s: results[s].score_mean for s in specs},
        "train_seconds": {s: results[s].train_seconds_mean for s in specs},
        "confirmed": confirmed,
        "rule": f"within {HIT_TOLERANCE:g} of the better score, or of its seed spread when larger",
        "summary": f"{specs[0]} scored {rec.score_mean:.4f}{versus} after {config.verify_epochs} epochs: "
        f"the advice {'held' if confirmed else 'did not hold'}",
        "report": str(report),
    }
