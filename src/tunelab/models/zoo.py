"""The model zoo: importing this module registers every built-in model and model source.

One import line per plugin file, like timm's `models/__init__`: each file registers what it defines.
The order of the lines is the order `tunelab models` lists the named models in. A tunelab run directory
is a source too, registered by `tunelab.runs` (it needs the runs layer, which this one may not import).

This is where code that builds models by name gets `load_backbone` from: the function lives in
`registry`, and only after these imports does the registry know the built-in names. The plugins import
torch, torchvision, timm and transformers, which is why `tunelab.models` itself does not import this
module (the CLI and settings import the light parts of `tunelab.models` at start-up).

May import: models.registry and the built-in plugin files.
"""

from __future__ import annotations

# isort: off
from tunelab.models import packaged  # noqa: F401  mobilenet_v2, efficientnet_lite0/1/2, minilm-l6
from tunelab.models.families import tiny  # noqa: F401  tiny-cnn, tiny-bert (random weights, for tests)
from tunelab.models import hub  # noqa: F401  timm:<name>, hf:<model id>, a local model directory

# isort: on
from tunelab.models.registry import SOURCES, ZOO, ModelInfo, ZooEntry, list_models, load_backbone

__all__ = ["SOURCES", "ZOO", "ModelInfo", "ZooEntry", "list_models", "load_backbone"]
