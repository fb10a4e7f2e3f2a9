"""Before anything trains: may --adapt run with these settings, this task, strategy and model; the target data.

Every refusal is one line that says what to give instead. The target data is read here, once, without
its labels (`data.unlabelled`): image folders for image models, texts for text classification, and
sentences as word lists for token classification (a CoNLL file whose tag columns are not read, or one
sentence per line).

May import: errors, data, strategies, tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.data.examples import Examples
from tunelab.data.unlabelled import read_unlabelled
from tunelab.errors import TunelabError
from tunelab.strategies.base import batchnorm_types
from tunelab.tasks import get_task
from tunelab.tasks.classification import Classification
from tunelab.tasks.token_classification import TokenClassification

if TYPE_CHECKING:
    from tunelab.settings import TrainConfig
    from tunelab.strategies import Plan

SUPPORTED = (Classification, TokenClassification)
"""The tasks --adapt works for: one label per image or text, and a tag per word."""


def check_settings(config: TrainConfig) -> None:
    """--adapt and --target-data come together: one without the other is refused before any data is read."""
    if config.adapt is not None and config.target_data is None:
        raise TunelabError(
            f"--adapt {config.adapt} needs unlabelled target-domain examples: give --target-data PATH "
            "(an image folder, a text file, or a CoNLL file for token classification)"
        )
    if config.target_data is not None and config.adapt is None:
        raise TunelabError(
            f"--target-data {config.target_data} is only used for domain adaptation: add --adapt dann or "
            "--adapt adabn, or leave --target-data out"
        )


def check_plan(config: TrainConfig, plan: Plan, task: str, adversarial: bool) -> None:
    """Refuse what the chosen method cannot do with this task, strategy or model (one line each)."""
    if config.adapt is None:
        return
    backbone = plan.backbone
    if not isinstance(get_task(task), SUPPORTED):
        raise TunelabError(
            f"--adapt {config.adapt} works for image-classification, text-classification and token-classification; "
            f"task {task} is not supported"
        )
    if config.adapt == "adabn" and not any(isinstance(m, batchnorm_types()) for m in backbone.model.modules()):
        raise TunelabError(
            f"--adapt adabn re-estimates BatchNorm statistics, but {config.model} has no BatchNorm layer "
            "(text models normalise with LayerNorm); use --adapt dann"
        )
    if config.adapt != "dann":
        return
    if not any(p.requires_grad for p in backbone.blocks.parameters()):
        raise TunelabError(
            f"--adapt dann trains the feature layers against a domain classifier, but strategy "
            f"{plan.strategy.spec()} trains only the head: use a strategy that trains the blocks (full, "
            "retrain:K, lora, adapter, ...) or --adapt adabn"
        )
    if adversarial:
        raise TunelabError("--adapt dann cannot be combined with --adversarial: give one of the two")


def read_target(
    config: TrainConfig, task: str, modality: str, classes: tuple[str, ...]
) -> tuple[Examples | None, tuple[str, ...]]:
    """The target examples (every label 0, never read) and the notes on what was ignored in them; None
    without --adapt. For token classification each example is a sentence as its list of words."""
    if config.adapt is None:
        return None, ()
    words = isinstance(get_task(task), TokenClassification)
    target = read_unlabelled(config.target_data, modality, config.text_column, config.label_column, words=words)
    if len(target) < 2:
        raise TunelabError(
            f"target_data {config.target_data} holds {len(target)} example; domain adaptation needs at least 2"
        )
    return target.as_examples(classes), target.notes


def describe(config: TrainConfig, target: Examples) -> str:
    """The run's opening line about adaptation."""
    if config.adapt == "dann":
        per_token = bool(target.inputs) and isinstance(target.inputs[0], list)
        rows = ", reading every real token" if per_token else ""
        return (
            f"domain adaptation: dann on {len(target)} unlabelled target "
            f"{'sentences' if per_token else 'examples'} ({target.source}); "
            f"reversal weight ramps 0 -> {config.adapt_weight:g}; domain classifier at the head's lr{rows}"
        )
    return (
        f"domain adaptation: adabn after training, BatchNorm statistics from {len(target)} unlabelled target "
        f"examples ({target.source})"
    )
