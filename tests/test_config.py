"""Settings layer as documented: defaults < --config file < flags; bad input fails early naming the key."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelab.errors import DataError, TunelabError
from tunelab.settings import (
    HardwareSettings,
    TrainConfig,
    add_arguments,
    field_docs,
    from_yaml_file,
    load_yaml,
    resolve,
    to_yaml,
    validate,
)

TASKS = ("image-classification", "text-classification", "token-classification")
"""Stand-in for the task registry's names, which the CLI passes in as choices."""


def parse(argv: list[str], cls=TrainConfig, skip=(), choices=None):
    parser = argparse.ArgumentParser(prog="tunelab train")
    add_arguments(parser, cls, skip, choices=choices)
    return resolve(cls, parser.parse_args(argv), choices=choices)


def write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- precedence


def test_defaults_apply_when_nothing_else_is_given():
    assert parse(["--model", "tiny-cnn"]) == TrainConfig(model="tiny-cnn")


def test_file_overrides_defaults_and_flags_override_file(tmp_path):
    path = write(tmp_path, "model: tiny-cnn\nepochs: 7\nlr: 0.001\nstrategy: lora:4\n")
    config = parse(["--config", str(path), "--lr", "0.01", "--strategy", "retrain:2"])
    assert config.model == "tiny-cnn"  # file
    assert config.epochs == 7  # file
    assert config.lr == 0.01 and config.strategy == "retrain:2"  # flags
    assert config.batch_size == 32  # default


def test_a_flag_equal_to_the_default_still_overrides_the_file(tmp_path):
    path = write(tmp_path, "model: m\nbatch_size: 64\ncache: false\n")
    config = parse(["--config", str(path), "--batch-size", "32", "--cache"])
    assert config.batch_size == 32 and config.cache is True


def test_none_literal_overrides_a_file_value(tmp_path):
    path = write(tmp_path, "model: m\nlr: 0.001\nval_data: val.csv\npatience: 3\n")
    config = parse(["--config", str(path), "--lr", "none", "--val-data", "none", "--patience", "None"])
    assert config.lr is None and config.val_data is None and config.patience is None


def test_none_is_not_accepted_for_a_field_that_cannot_be_none(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--model", "m", "--epochs", "none"])
    assert exc.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def test_bool_flags_have_negative_forms_and_leave_unset_alone(tmp_path):
    assert parse(["--model", "m"]).augment is None
    assert parse(["--model", "m", "--augment"]).augment is True
    assert parse(["--model", "m", "--no-augment"]).augment is False
    assert parse(["--model", "m", "--no-cache", "--resume"]).cache is False
    path = write(tmp_path, "model: m\naugment: true\n")
    assert parse(["--config", str(path), "--no-augment"]).augment is False


def test_flags_are_typed():
    config = parse(["--model", "m", "--epochs", "3", "--warmup", "0", "--lr", "1e-4", "--max-length", "64"])
    assert (config.epochs, config.warmup, config.lr, config.max_length) == (3, 0.0, 1e-4, 64)
    assert isinstance(config.warmup, float)


def test_missing_model_says_how_to_give_it():
    with pytest.raises(TunelabError) as exc:
        parse(["--epochs", "2"])
    assert str(exc.value) == "missing required setting 'model' (give --model or put model: in the config file)"


def test_skipped_fields_get_no_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig, skip=("resume", "out"))
    flags = {opt for action in parser._actions for opt in action.option_strings}
    assert "--resume" not in flags and "--out" not in flags and "--model" in flags and "--config" in flags


def test_choice_flags_are_checked():
    with pytest.raises(TunelabError, match=r"mixed_precision must be one of auto, no, fp16, bf16; got 'fp8'"):
        parse(["--model", "m", "--mixed-precision", "fp8"])


# ---------------------------------------------------------------- file errors


@pytest.mark.parametrize(
    "text, words",
    [
        ("model: m\nepoch: 3\n", ["unknown key 'epoch'", "did you mean 'epochs'"]),
        ("model: m\nzzz: 3\n", ["unknown key 'zzz'", "valid keys: model, ", "strategy"]),
        ("model: m\nbatch-size: 3\n", ["unknown key 'batch-size'", "did you mean 'batch_size'"]),
        ('model: m\nepochs: "5"\n', ["epochs must be an integer", "'5'", "a string", "without quotes"]),
        ("model: m\nepochs: true\n", ["epochs must be an integer", "True"]),
        ("model: m\nepochs: 2.5\n", ["epochs must be an integer", "2.5"]),
        ("model: m\nlr: fast\n", ["lr must be a number or null", "'fast'"]),
        ("model: m\ncache: yes\n", ["cache must be true or false", "'yes'"]),
        ("model: null\n", ["model must be a string", "null"]),
        ("model: m\nepochs: 0\n", ["epochs must be at least 1; got 0"]),
        ("model: m\nwarmup: 1.5\n", ["warmup must be between 0 and 1; got 1.5"]),
    ],
)
def test_bad_settings_name_the_key_and_what_is_valid(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(TunelabError) as exc:
        from_yaml_file(TrainConfig, path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message


def test_yaml_12_scalars_that_yaml_11_gets_wrong(tmp_path):
    path = write(tmp_path, "model: m\nlr: 1e-4\nweight_decay: 5E-2\nmixed_precision: no\nlabel_column: on\n")
    config = from_yaml_file(TrainConfig, path)
    assert config.lr == 1e-4 and config.weight_decay == 0.05
    assert config.mixed_precision == "no" and config.label_column == "on"


def test_ints_are_accepted_for_float_fields(tmp_path):
    config = from_yaml_file(TrainConfig, write(tmp_path, "model: m\nlr: 1\ngrad_clip: 5\n"))
    assert config.lr == 1.0 and isinstance(config.lr, float) and isinstance(config.grad_clip, float)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(TunelabError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(DataError) as exc:
        load_yaml(write(tmp_path, "model: m\nepochs: [1, 2\nlr: 3\n"))
    assert exc.value.line is not None and exc.value.line >= 2 and "invalid YAML" in str(exc.value)
    with pytest.raises(DataError, match="mapping of setting: value"):
        load_yaml(write(tmp_path, "- model\n- m\n"))
    with pytest.raises(DataError, match="duplicate key 'lr'") as exc:
        load_yaml(write(tmp_path, "lr: 0.1\nepochs: 2\nlr: 0.2\n"))
    assert exc.value.line == 3
    assert load_yaml(write(tmp_path, "# only a comment\n")) == {}


def test_validate_reports_the_source():
    with pytest.raises(TunelabError, match=r"^somewhere: unknown key 'nope'"):
        validate(TrainConfig, {"nope": 1}, "somewhere")
    assert validate(TrainConfig, {"lr": 2, "augment": None}, "x") == {"lr": 2.0, "augment": None}


# ---------------------------------------------------------------- round trip


def test_to_yaml_round_trips_and_documents_every_field(tmp_path):
    config = TrainConfig(
        model="hf:prajjwal1/bert-tiny",
        strategy="lora:4:alpha=8",
        data="data/train.csv",
        val_data="no",
        task="text-classification",
        epochs=1,
        lr=3e-05,
        grad_clip=None,
        patience=2,
        augment=False,
        cache=False,
        text_column="1e3",
        label_column="true",
        val_fraction=0.0,
        mixed_precision="no",
        resume=True,
    )
    text = to_yaml(config)
    for doc in field_docs(TrainConfig).values():
        assert f"# {doc}" in text
    path = write(tmp_path, text)
    assert from_yaml_file(TrainConfig, path) == config


texts = st.text(max_size=20)
optional_ints = st.none() | st.integers(min_value=1, max_value=10**12)


@settings(max_examples=60, deadline=None)
@given(
    model=texts,
    strategy=texts,
    data=texts,
    val_data=st.none() | texts,
    text_column=st.none() | texts,
    lr=st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    warmup=st.floats(0, 1),
    seed=st.integers(-(2**63), 2**63),
    patience=optional_ints,
    max_length=optional_ints,
    augment=st.none() | st.booleans(),
    task=texts,
)
def test_any_config_round_trips_through_yaml(tmp_path_factory, **values):
    config = TrainConfig(**values)
    path = tmp_path_factory.mktemp("rt") / "config.yaml"
    path.write_text(to_yaml(config), encoding="utf-8")
    assert from_yaml_file(TrainConfig, path) == config


# ---------------------------------------------------------------- help and other configs


def test_help_shows_the_field_docs_and_defaults():
    wide = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=10_000))
    add_arguments(wide, TrainConfig)
    help_text = " ".join(wide.format_help().split())
    docs = field_docs(TrainConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)} and all(docs.values())
    for name, doc in docs.items():
        assert " ".join(doc.split()) in help_text, name
    for expected in ["(default: 32)", "(required)", "--no-cache", "--mixed-precision {auto,no,fp16,bf16}"]:
        assert expected in help_text


@dataclass(frozen=True, kw_only=True)
class CompareLike(HardwareSettings):
    """A config another command might define, composed with a shared group."""

    models: tuple[str, ...]
    """Models to compare."""
    seeds: tuple[int, ...] = (0,)
    """Seeds per model."""


def test_functions_are_generic_over_frozen_dataclasses(tmp_path):
    assert field_docs(CompareLike) == {
        "mixed_precision": field_docs(TrainConfig)["mixed_precision"],  # the group's docs come through the MRO
        "num_workers": field_docs(TrainConfig)["num_workers"],
        "models": "Models to compare.",
        "seeds": "Seeds per model.",
    }
    config = parse(["--models", "a,b", "--seeds", "1,2,3"], cls=CompareLike)
    assert config == CompareLike(models=("a", "b"), seeds=(1, 2, 3))
    path = write(tmp_path, to_yaml(config))
    assert from_yaml_file(CompareLike, path) == config
    with pytest.raises(TunelabError, match="seeds must be a list of integers"):
        from_yaml_file(CompareLike, write(tmp_path, "models: [a]\nseeds: [1, x]\n"))
    with pytest.raises(TunelabError, match="mixed_precision must be one of"):
        from_yaml_file(CompareLike, write(tmp_path, "models: [a]\nmixed_precision: fp64\n"))
    with pytest.raises(TunelabError, match="num_workers must be at least 0"):
        from_yaml_file(CompareLike, write(tmp_path, "models: [a]\nnum_workers: -1\n"))


# ---------------------------------------------------------------- choices from a registry


def test_registry_choices_are_shown_and_checked_and_the_default_stays_valid(tmp_path):
    choices = {"task": TASKS}
    wide = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=10_000))
    add_arguments(wide, TrainConfig, choices=choices)
    assert "--task {auto," + ",".join(TASKS) + "}" in wide.format_help()
    assert parse(["--model", "m"], choices=choices).task == "auto"
    assert parse(["--model", "m", "--task", TASKS[1]], choices=choices).task == TASKS[1]
    with pytest.raises(TunelabError, match=r"^command line: task must be one of auto, image-classification"):
        parse(["--model", "m", "--task", "segmentation"], choices=choices)
    path = write(tmp_path, "model: m\ntask: segmentation\n")
    with pytest.raises(TunelabError, match=r"task must be one of auto, image-classification, text-classification"):
        parse(["--config", str(path)], choices=choices)
    with pytest.raises(TunelabError, match=r"task must be one of"):
        from_yaml_file(TrainConfig, path, choices=choices)
    # Without the registry's names the settings layer takes any text; the run checks it against the registry.
    assert from_yaml_file(TrainConfig, path).task == "segmentation"


def test_notes_from_the_caller_join_a_fields_help():
    wide = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=10_000))
    add_arguments(wide, TrainConfig, notes={"strategy": "Registered: none = a head on frozen features."})
    assert "Registered: none = a head on frozen features. (default: full)" in wide.format_help()


def test_a_config_file_cannot_turn_on_command_line_only_settings(tmp_path):
    path = write(tmp_path, "model: m\ntrust_remote_code: true\n")
    with pytest.raises(TunelabError, match="only be turned on on the command line"):
        parse(["--config", str(path)])
    assert parse(["--config", str(write(tmp_path, "model: m\n")), "--trust-remote-code"]).trust_remote_code is True
