"""Settings defined once: train, compare and advise share groups, so every training setting reaches every run.

No training: these tests build configs, parse flags and files, and plan comparisons.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing

import pytest

from tunelab.advice.command import verification_plan
from tunelab.advice.decide import Thresholds
from tunelab.comparison.grid import planned_runs
from tunelab.settings import (
    AdviseConfig,
    CompareConfig,
    ThresholdSettings,
    TrainConfig,
    add_arguments,
    field_docs,
    from_yaml_file,
    resolve,
    shared_settings,
    to_yaml,
)
from tunelab.settings.fields import COMMAND_LINE_ONLY, Limits, allowed_values
from tunelab.settings.yaml_io import dump_line

SAVED_NAMES = {
    "model",
    "target_data",
    "adapt",
    "adapt_weight",
    "log_with",
    "tracking_dir",
    "feature_store",
    "length_grouping",
    "attention_dropout",
    "image_size",
    "class_names",
    "optimizer",
    "momentum",
    "scheduler",
    "grad_accumulation",
    "label_smoothing",
    "class_weights",
    "metric",
    "augmentation",
    "strategy",
    "data",
    "val_data",
    "out",
    "task",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup",
    "grad_clip",
    "patience",
    "seed",
    "augment",
    "cache",
    "cache_memory_mb",
    "max_length",
    "max_image_pixels",
    "text_column",
    "label_column",
    "val_fraction",
    "test_data",
    "test_fraction",
    "train_fraction",
    "folds",
    "fold",
    "mixed_precision",
    "num_workers",
    "resume",
    "trust_remote_code",
    "adversarial",
    "adv_epsilon",
    "adv_steps",
}
"""TrainConfig's field names: the keys of every config.yaml saved so far, which --resume and reports read."""

PER_RUN = {"strategy", "seed", "fold", "train_fraction", "out", "resume"}
"""The settings that differ between the runs of one comparison; every other one is the same for all runs."""


def _own_fields(cls: type) -> set[str]:
    """The fields a class declares itself, not through a group."""
    return set(inspect.get_annotations(cls))


def changed_values(cls: type) -> dict:
    """A valid value different from the default for every field of `cls`, chosen from its type and limits."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        default = None if f.default is dataclasses.MISSING else f.default
        union = isinstance(hints[f.name], types.UnionType)
        kind = next(t for t in (typing.get_args(hints[f.name]) if union else (hints[f.name],)) if t is not type(None))
        limits: Limits = f.metadata.get("limits", Limits())
        low = 0 if limits.low is None else limits.low
        if allowed := allowed_values(f):
            value = next(v for v in allowed if v != default)
        elif kind is bool:
            value = not default
        elif kind is str:
            value = f"{default or ''}x"
        elif kind is int:
            value = (low if default is None else default) + 2
        elif kind is float:
            value = (low + limits.high) / 2 if limits.high is not None else (default or low) + 0.5
            value = value / 2 if value == default else value
        else:  # the grid's own tuple fields are not shared; they keep their defaults here
            continue
        values[f.name] = value
    if "test_data" in values:  # one test set per run: the two ways of giving it exclude each other
        values.pop("test_fraction", None)
    return values


def _flags(values: dict) -> list[str]:
    argv = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def _resolve(cls: type, argv: list[str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    return resolve(cls, parser.parse_args(argv))


# ---------------------------------------------------------------- defined once


def test_train_config_keeps_the_names_saved_runs_use():
    assert {f.name for f in dataclasses.fields(TrainConfig)} == SAVED_NAMES
    assert _own_fields(TrainConfig) == PER_RUN  # everything else comes from the shared groups


@pytest.mark.parametrize("other", [CompareConfig, AdviseConfig])
def test_shared_settings_are_declared_once_with_one_doc_default_and_limits(other):
    train, theirs = {f.name: f for f in dataclasses.fields(TrainConfig)}, {f.name: f for f in dataclasses.fields(other)}
    shared = set(train) & set(theirs) - (_own_fields(TrainConfig) | _own_fields(other))
    assert shared and set(shared_settings(other(model="m"), TrainConfig)) == shared
    for name in shared:
        declared = [k for k in other.__mro__ if name in inspect.get_annotations(k)]
        assert len(declared) == 1 and declared[0] in TrainConfig.__mro__, name  # one group, shared by both
        assert field_docs(other)[name] == field_docs(TrainConfig)[name], name
        assert theirs[name].default == train[name].default and theirs[name].metadata == train[name].metadata, name


def test_compare_shares_every_setting_that_is_not_per_run():
    assert SAVED_NAMES - PER_RUN <= set(shared_settings(CompareConfig(model="m"), TrainConfig))


def test_a_field_named_alike_but_not_shared_is_not_passed_on():
    config = CompareConfig(model="m", out="elsewhere")
    assert "out" not in shared_settings(config, TrainConfig)
    assert "out" not in shared_settings(AdviseConfig(model="m", out="x"), CompareConfig)


# ---------------------------------------------------------------- compare: every setting reaches every run


def _shared_changes() -> dict:
    return {k: v for k, v in changed_values(TrainConfig).items() if k not in PER_RUN}


def _check_every_run(config: CompareConfig, changes: dict) -> None:
    runs = planned_runs(config)
    assert runs
    for run in runs:
        for name, value in changes.items():
            assert getattr(run, name) == value, name


def test_every_shared_setting_given_as_a_flag_reaches_every_planned_run(tmp_path):
    changes = _shared_changes()
    config = _resolve(CompareConfig, [*_flags(changes), "--out", str(tmp_path), "--strategies", "none,lora:2"])
    _check_every_run(config, changes)


def test_every_shared_setting_given_in_a_file_reaches_every_planned_run(tmp_path):
    changes = {k: v for k, v in _shared_changes().items() if k not in COMMAND_LINE_ONLY}
    path = tmp_path / "compare.yaml"
    path.write_text("\n".join(dump_line(k, v) for k, v in changes.items()) + "\n", encoding="utf-8")
    config = from_yaml_file(CompareConfig, path)
    assert config == CompareConfig(**changes)
    _check_every_run(CompareConfig(**changes, out=str(tmp_path), strategies=("full",)), changes)


def test_lr_is_the_default_for_every_strategy_and_lrs_overrides_it(tmp_path):
    config = CompareConfig(model="m", out=str(tmp_path), strategies=("none", "full"), lr=0.02, lrs=("full=0.5",))
    assert {r.strategy: r.lr for r in planned_runs(config)} == {"none": 0.02, "full": 0.5}


# ---------------------------------------------------------------- advise: the verification runs


def test_every_setting_advise_shares_reaches_the_verification_runs(tmp_path):
    changes = {k: v for k, v in changed_values(AdviseConfig).items() if k not in _own_fields(AdviseConfig)}
    changes = {k: v for k, v in changes.items() if k in SAVED_NAMES}  # the thresholds only steer the advice
    config = AdviseConfig(**changes, out=str(tmp_path), verify_epochs=2)
    plan = verification_plan(("none", "full"), config)
    assert plan.epochs == 2 and plan.out == str(tmp_path) and plan.strategies == ("none", "full")
    _check_every_run(plan, changes)


def test_advise_thresholds_default_to_the_decision_guides():
    assert Thresholds() == Thresholds(**shared_settings(AdviseConfig(model="m"), ThresholdSettings))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", [TrainConfig, CompareConfig, AdviseConfig])
def test_every_field_changed_round_trips_through_yaml_and_flags(tmp_path, cls):
    changes = changed_values(cls)
    config = cls(**changes)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")
    assert from_yaml_file(cls, path) == config
    assert _resolve(cls, _flags(changes)) == cls(**changes)
