"""Settings: what every command can be told, defined once, read from defaults < a YAML file < flags.

    fields.py   the machinery, generic over frozen dataclasses: docs from field docstrings, strict
                validation, YAML files, argparse flags, resolve(), shared_settings()
    yaml_io.py  YAML 1.2 scalars, no duplicate keys, one-line dumps
    groups.py   the shared groups (model, data, evaluation, epochs, loop, cache, hardware, predict)
    train.py, compare.py, advise.py, lr_find.py   each command's settings, composed from the groups

The bottom layer above `fileio` and `errors`: imports only the standard library, PyYAML and those two,
so `tunelab --help` never waits for torch. Choices that come from registries in higher layers (task
names) are passed in by the caller.
"""

from __future__ import annotations

from tunelab.settings.advise import AdviseConfig, ThresholdSettings
from tunelab.settings.compare import CompareConfig
from tunelab.settings.fields import (
    add_arguments,
    field_docs,
    from_yaml_file,
    resolve,
    setting,
    shared_settings,
    to_yaml,
    validate,
)
from tunelab.settings.groups import (
    CacheSettings,
    DataSettings,
    EpochSettings,
    EvaluationSettings,
    HardwareSettings,
    LoopSettings,
    ModelSettings,
    PredictSettings,
)
from tunelab.settings.lr_find import LrFindConfig
from tunelab.settings.train import TrainConfig
from tunelab.settings.yaml_io import load_yaml

__all__ = [
    "AdviseConfig",
    "CacheSettings",
    "CompareConfig",
    "DataSettings",
    "EpochSettings",
    "EvaluationSettings",
    "HardwareSettings",
    "LoopSettings",
    "LrFindConfig",
    "ModelSettings",
    "PredictSettings",
    "ThresholdSettings",
    "TrainConfig",
    "add_arguments",
    "field_docs",
    "from_yaml_file",
    "load_yaml",
    "resolve",
    "setting",
    "shared_settings",
    "to_yaml",
    "validate",
]
