"""A run is its settings: every automatic default worked out, and one comparison for --resume and compare.

Several settings mean "work it out" when left unset: the task (auto: from the data), the learning rate (the
strategy's default), the text length (the model's), image augmentation (on unless a frozen prefix can be
cached), length grouping (on for text, which has lengths to group) and attention dropout (0 for text).
Two commands that differ only in whether such a value was typed train the same run; two that leave it
unset for different models or strategies do not. So a run's config.yaml holds the *resolved* settings
(`resolved`), and whether an existing run may be continued or reused is decided on resolved values on both
sides (`differing_settings`), never on what happened to be typed:

- `train --resume` (`check_resume`, called twice by the loop): first, before anything is loaded, every
  setting that needs no model (a flag left out whose value is "none" — --val-data, --folds, --adversarial,
  --text-column — is caught here in a second); then, once the model is prepared, every setting resolved.
  Only RESUME_MAY_DIFFER may change. Both checks run before anything in the run folder is written.
- `compare` (`check_reuse`): a planned run whose folder already holds a run is reused (skipped when
  finished, resumed from its checkpoint otherwise) only when its resolved settings match; epochs must match
  too. Otherwise compare stops before training anything, or with --rerun retrains those runs
  (`discard_run`).

Runs written before config.yaml held resolved values have `max_length: null` / `augment: null`: a saved
unset value is resolved the way the current command's run resolves it, so such a run still resumes (and is
still reused) when the command matches, and is saved with the resolved values from then on. A setting
the saved file lacks altogether is older than the run: it takes the value the run trained with
(`_as_trained`), never today's default, so an older text run is not taken for a run without attention dropout.

No torch at import time: `resolve_settings` loads the model (through `runs.prepare`) when it is called.
May import: errors, settings, strategies, runs.rundir, runs.run_lock (and, when called, runs.loaders and
runs.prepare).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError, brief
from tunelab.runs.run_lock import locked_run
from tunelab.runs.rundir import RunDir, check_only_run_files
from tunelab.settings import TrainConfig, from_yaml_file, load_yaml
from tunelab.strategies import parse_strategy
from tunelab.tasks import task_class

if TYPE_CHECKING:
    from tunelab.strategies import Plan

RESUME_MAY_DIFFER = frozenset(
    {"resume", "epochs", "patience", "num_workers", "cache_memory_mb", "max_image_pixels", "out"}
    | {"feature_store", "log_with", "tracking_dir"}
)
"""Settings a --resume may change: how long to train and how to load, never what is trained (out: the run
folder may have moved; cache_memory_mb only decides whether cached features sit in memory or on disk, which
gives the same numbers; max_image_pixels only whether an image is refused, so it can be raised to go on;
feature_store only where identical features are read from (`runs.feature_store`); log_with and tracking_dir
only where the numbers are also sent)."""

REUSE_MAY_DIFFER = frozenset(
    {"resume", "num_workers", "cache_memory_mb", "max_image_pixels", "out", "feature_store", "log_with", "tracking_dir"}
)
"""Settings in which a compare's planned run may differ from the run it reuses: epochs must match, since a
finished 3-epoch run is not the 2-epoch run the table would claim it is."""

NEEDS_MODEL = ("task", "lr", "max_length", "augment", "image_size", "metric", "length_grouping", "attention_dropout")
"""Settings whose unset value can only be worked out once the data is read and the model prepared."""


@dataclass(frozen=True)
class ModelDefaults:
    """What a prepared model decides about a run's settings; small, so it can be kept when the model is not."""

    max_length: int | None
    """Tokens per example when --max-length is unset: the model's default (None for an image model)."""
    cached_prefix: int
    """Leading blocks the feature cache could compute once (see Plan.cached_prefix)."""
    modality: str
    """'image' or 'text': only images are augmented."""
    image_size: int | None = None
    """Side of the images the model is fed when --image-size is unset: the model's own (None for text)."""
    new_weights_only: bool = False
    """Whether the plan trains only new weights (the head, inserted modules that are not edits of pretrained
    weights, see Strategy.edits_pretrained): a task may want another lr then."""
    checkpoint_attention_dropout: float | None = None
    """The model's own attention dropout (Backbone.attention_dropout): what runs older than the setting used."""

    @classmethod
    def of(cls, plan: Plan) -> ModelDefaults:
        backbone = plan.backbone
        text = backbone.modality == "text"
        added = plan.inserted_params
        new_only = not plan.strategy.edits_pretrained and all(
            name in added for g in plan.groups if g.name != "head" for name in g.names
        )
        return cls(
            backbone.input.max_length if text else None,
            plan.cached_prefix,
            backbone.modality,
            None if text else backbone.input.size,
            new_only,
            backbone.attention_dropout,
        )


def automatic_augment(modality: str, cache: bool, cached_prefix: int) -> bool:
    """Augment training images unless a frozen prefix will be cached: augmented inputs would change the
    cached features every epoch, so caching (often 10x faster for `none`) wins by default. Text is never
    augmented, so a text run records off. --augment or --no-augment decides instead when given."""
    return modality == "image" and not (cache and cached_prefix > 0)


def resolved(config: TrainConfig, plan: Plan, task: str) -> TrainConfig:
    """`config` with every automatic setting worked out as a run of `plan` on `task` uses it.

    Pure: the loop calls it with the plan it prepared anyway. `task` is the task inferred from the data
    (used when config.task is 'auto'). Values the user gave are kept; see `_resolve` for the rules.
    """
    return _resolve(config, task, ModelDefaults.of(plan))


def resolve_settings(config: TrainConfig) -> TrainConfig:
    """`config` resolved without training: reads the data's task and prepares the model (compare's reuse).

    The head is built for two classes: its size decides none of the resolved settings.
    """
    return _resolve(config, *_model_defaults(config))


def differing_settings(saved: TrainConfig, wanted: TrainConfig, may_differ: Iterable[str]) -> list[str]:
    """The names of the settings, in config.yaml order, whose resolved values differ (beyond `may_differ`)."""
    skip = set(may_differ)
    return [
        f.name for f in fields(TrainConfig) if f.name not in skip and getattr(saved, f.name) != getattr(wanted, f.name)
    ]


def describe_differences(saved: TrainConfig, wanted: TrainConfig, keys: list[str]) -> str:
    """'max_length (32 -> 64), lr (0.01 -> 0.001)': each key with the saved value, then the wanted one."""
    return ", ".join(f"{k} ({_show(getattr(saved, k))} -> {_show(getattr(wanted, k))})" for k in keys)


# ---------------------------------------------------------------- train --resume


def check_resume(run: RunDir, wanted: TrainConfig, plan: Plan | None = None) -> None:
    """Refuse to continue `run` with other settings than it was started with (only RESUME_MAY_DIFFER may change).

    Without `plan` (before anything is loaded): every setting that needs no model is compared, those in
    NEEDS_MODEL only where both sides give a value. With the prepared `plan` and `wanted` resolved
    (`resolved`): every setting, the saved run's unset values resolved the way this run resolves them.
    """
    saved = _saved_settings(run)
    skip = set(RESUME_MAY_DIFFER)
    if plan is None:  # which settings are unset is read before the strategy resolves an lr into them
        skip |= {k for k in NEEDS_MODEL if _unset(saved, k) or _unset(wanted, k)}
        saved, wanted = _resolve_strategy(saved), _resolve_strategy(wanted)
    else:
        saved = _as_trained(resolved(saved, plan, wanted.task), run, ModelDefaults.of(plan))
    keys = differing_settings(saved, wanted, skip)
    if keys:
        differences = describe_differences(saved, wanted, keys)
        raise TunelabError(
            f"cannot resume {run.path}: settings differ from the saved run: {differences}; "
            f"resume with the settings in {run.config}, or start a new run in another --out"
        )


# ---------------------------------------------------------------- compare: reuse, or rerun


def check_reuse(planned: list[TrainConfig], rerun: bool) -> list[TrainConfig]:
    """The planned runs that must be trained again from nothing because their folder holds another run.

    A planned run's folder counts when it holds a tunelab run (summary.json: finished; checkpoint/latest:
    interrupted); any other folder is left to `train`'s own checks. Its saved config.yaml is compared with
    the planned settings, both resolved (`resolve_settings`; one model load per model, strategy and task),
    allowing only REUSE_MAY_DIFFER to differ.

    - No mismatch: returns []. The caller skips finished runs and resumes interrupted ones as before.
    - Mismatches and not `rerun`: raises TunelabError naming the first such run folder, the differing
      keys (saved -> wanted), how many other runs differ, and the ways on (--rerun, or another --out).
      Nothing is changed on disk.
    - Mismatches and `rerun`: returns those planned runs, in plan order, and deletes nothing. The caller
      passes each to `discard_run` right before training it (so an interrupted compare --rerun loses only
      the run it was retraining), then trains the TrainConfig that `discard_run` returns (resume False).
    """
    defaults: dict[tuple, tuple[str, ModelDefaults]] = {}
    mismatched: list[tuple[TrainConfig, TrainConfig, TrainConfig, list[str]]] = []
    for config in planned:
        run = RunDir(Path(config.out))
        if not (run.complete or run.latest.is_file()):
            continue
        saved = _saved_settings(run)
        key = (config.model, _resolve_strategy(config).strategy, config.task, config.data, config.trust_remote_code)
        if key not in defaults:
            defaults[key] = _model_defaults(config)
        task, model = defaults[key]
        wanted = _resolve(config, task, model)
        saved = _as_trained(_resolve(saved, task, model), run, model)  # older runs: unset values resolved as planned
        keys = differing_settings(saved, wanted, REUSE_MAY_DIFFER)
        if keys:
            mismatched.append((config, saved, wanted, keys))
    if mismatched and not rerun:
        config, saved, wanted, keys = mismatched[0]
        others = f" (and {len(mismatched) - 1} more run(s))" if len(mismatched) > 1 else ""
        raise TunelabError(
            f"{config.out} holds a run with other settings than this compare: "
            f"{describe_differences(saved, wanted, keys)}{others}; pass --rerun to retrain those runs, "
            "or give another --out"
        )
    return [config for config, *_ in mismatched]


def discard_run(config: TrainConfig) -> TrainConfig:
    """Delete the run in `config.out` so it can be trained again (compare --rerun); returns `config` to train.

    Only a folder holding nothing but a run's own files is deleted (a symlinked or foreign folder is
    refused, as `train` refuses to write into one), and only under the run's lock (`runs.run_lock`: a run
    another process is training is refused). summary.json goes first, so a delete cut short leaves an
    unfinished run, never a finished one with missing files.
    """
    run = RunDir(Path(config.out))
    if run.path.is_symlink():
        raise TunelabError(f"{run.path} is a symbolic link; delete the run it points to, or give another --out")
    with locked_run(run.path):
        check_only_run_files(run)
        run.summary.unlink(missing_ok=True)
        shutil.rmtree(run.path)
    return replace(config, resume=False)


# ---------------------------------------------------------------- the rules


def _resolve(config: TrainConfig, task: str, model: ModelDefaults) -> TrainConfig:
    """The resolution rules in one place: strategy as its canonical spec (lora:alpha=1e-1 and
    lora:alpha=0.1 are one strategy), task from the data, lr from the task or the strategy, metric from the task,
    max_length from a text model, image_size from an image model, augment from the feature cache
    (`automatic_augment`), length_grouping on for a text model (images have no length; the benchmark that
    made it the default is in benchmarks/README.md), attention_dropout 0 where the model has one
    (`_attention_dropout`). A value the user gave is kept."""
    task = task if config.task == "auto" else config.task
    task_lr = task_class(task).new_weights_lr if model.new_weights_only else None
    if config.lr is None and task_lr is not None:
        config = replace(config, lr=task_lr)  # the task's default beats the strategy's
    config = _resolve_strategy(config)
    return replace(
        config,
        task=task,
        metric=task_class(task).metric if config.metric == "auto" else config.metric,
        max_length=model.max_length if config.max_length is None else config.max_length,
        image_size=model.image_size if config.image_size is None else config.image_size,
        augment=(
            automatic_augment(model.modality, config.cache, model.cached_prefix)
            if config.augment is None
            else config.augment
        ),
        length_grouping=model.modality == "text" if config.length_grouping is None else config.length_grouping,
        attention_dropout=_attention_dropout(config, model),
    )


def _attention_dropout(config: TrainConfig, model: ModelDefaults) -> float | None:
    """0 for a model with attention dropout unless --attention-dropout says: at 0 torch's fused attention
    kernel runs instead of materialising every attention matrix (benchmarks/README.md, attention dropout);
    None for a model without it (images)."""
    if config.attention_dropout is not None:
        return config.attention_dropout
    return None if model.checkpoint_attention_dropout is None else 0.0


def _as_trained(saved: TrainConfig, run: RunDir, model: ModelDefaults) -> TrainConfig:
    """A resolved saved run with the settings its config.yaml predates set to what it trained with.

    attention_dropout arrived after text runs had trained with the checkpoint's own (0.1 for BERT-family
    models); resolving its absence to today's 0 would let such a run pass for one trained without it.
    """
    if "attention_dropout" in load_yaml(run.config):
        return saved
    return replace(saved, attention_dropout=model.checkpoint_attention_dropout)


def _resolve_strategy(config: TrainConfig) -> TrainConfig:
    """The settings that follow from the strategy spec alone (no model, no data): its canonical spec and lr.

    The lr is the strategy's default unless given; `_resolve` first puts a task's own default in (see
    `Task.new_weights_lr`), which is why lr is in NEEDS_MODEL for the checks made without a model.
    """
    strategy = parse_strategy(config.strategy)
    return replace(config, strategy=strategy.spec(), lr=strategy.default_lr if config.lr is None else config.lr)


def _model_defaults(config: TrainConfig) -> tuple[str, ModelDefaults]:
    """The task the data implies and what the prepared model decides (loads the model: seconds)."""
    from tunelab.runs.loaders import infer_task
    from tunelab.runs.prepare import prepare

    task = infer_task(config.data, config.task)
    plan = prepare(config.model, config.strategy, 2, config.trust_remote_code, task=task)
    return task, ModelDefaults.of(plan)


def _saved_settings(run: RunDir) -> TrainConfig:
    if not run.config.is_file():
        raise TunelabError(
            f"{run.path} holds a run without its config.yaml (damaged); delete the folder or give another --out"
        )
    return from_yaml_file(TrainConfig, run.config)


def _unset(config: TrainConfig, key: str) -> bool:
    return getattr(config, key) in (None, "auto")


def _show(value) -> str:
    """A setting's value as a message shows it: none, true/false, numbers as written, text kept short."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return brief(value, 60)
