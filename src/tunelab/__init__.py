"""tunelab: transfer learning with the classic strategies, measured.

Public API:
- `load_backbone(name, pretrained=True)`: a zoo model in the backbone contract (`Backbone`).
- `prepare(model, strategy, num_classes)`: load, new head, strategy applied -> `Plan` (parameter groups).
- `parse_strategy(spec)`, `REGISTRY`: the strategies (none, full, retrain:K, adapter, lora, scratch).
- `set_train_mode(model)`: train mode except frozen blocks and frozen BatchNorm.
- `merge_lora(model)`: fold LoRA updates into the weights.
- `embed(model, data)`: pooled features, labels and example ids of a data set under any model or run (`Embeddings`).
- `train(TrainConfig(...))`: one run, as `tunelab train` does it (its summary); `compare(CompareConfig(...))`:
  `tunelab compare`, returning its numbers (`Comparison`);
  `advise(model, data)`: the recommendation (`Advice`); `run_advise(AdviseConfig(...))`: `tunelab advise`.
- `export(run, out)`: a finished run as an ONNX file (LoRA merged, adapters included).
- `lr_find(LrFindConfig(...))`: the lr range test, as `tunelab lr-find` runs it (`LrFindResult`: curve, suggestion).

Any `model` argument also takes a finished run directory: the model that run trained, as a new source.

Why the names load lazily: the `tunelab` command imports this package, and `tunelab --help` must answer in
well under a second, while `import torch` alone takes longer than that. So importing `tunelab` loads nothing
heavy: each public name is looked up in `_EXPORTS` (name -> defining module) and imported on first use
(PEP 562 module `__getattr__`). The `TYPE_CHECKING` block below names the same objects for type checkers and
IDEs; `tests/test_cli.py` checks that the two lists agree and that the package imports without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from tunelab.errors import DataError, TunelabError

if TYPE_CHECKING:
    from tunelab.advice.api import advise
    from tunelab.advice.command import run_advise
    from tunelab.comparison.api import Comparison, compare
    from tunelab.embedding import Embeddings, embed
    from tunelab.models.contract import Backbone, TransferModel
    from tunelab.models.zoo import ZOO, list_models, load_backbone
    from tunelab.onnx_export import export
    from tunelab.runs.loop import train
    from tunelab.runs.lr_find import LrFindResult, lr_find
    from tunelab.runs.prepare import prepare
    from tunelab.settings import AdviseConfig, CompareConfig, LrFindConfig, TrainConfig
    from tunelab.strategies import REGISTRY, Plan, Strategy, parse_strategy, set_train_mode
    from tunelab.strategies.layers import merge_lora

_EXPORTS = {
    "AdviseConfig": "tunelab.settings",
    "Backbone": "tunelab.models.contract",
    "CompareConfig": "tunelab.settings",
    "Comparison": "tunelab.comparison.api",
    "Embeddings": "tunelab.embedding",
    "LrFindConfig": "tunelab.settings",
    "LrFindResult": "tunelab.runs.lr_find",
    "Plan": "tunelab.strategies",
    "REGISTRY": "tunelab.strategies",
    "Strategy": "tunelab.strategies",
    "TrainConfig": "tunelab.settings",
    "TransferModel": "tunelab.models.contract",
    "ZOO": "tunelab.models.zoo",
    "advise": "tunelab.advice.api",
    "compare": "tunelab.comparison.api",
    "embed": "tunelab.embedding",
    "export": "tunelab.onnx_export",
    "list_models": "tunelab.models.zoo",
    "load_backbone": "tunelab.models.zoo",
    "lr_find": "tunelab.runs.lr_find",
    "merge_lora": "tunelab.strategies.layers",
    "parse_strategy": "tunelab.strategies",
    "prepare": "tunelab.runs.prepare",
    "run_advise": "tunelab.advice.command",
    "set_train_mode": "tunelab.strategies",
    "train": "tunelab.runs.loop",
}
"""Public name -> the module that defines it; imported on first access."""

_ALSO_IMPORT = {"tunelab.models.zoo": "tunelab.runs"}
"""Module -> a package whose import registers plugins its functions look up. A run directory becomes a model
source when `tunelab.runs` is imported (a layer above the zoo), so `load_backbone("runs/x")` needs it too."""

__all__ = [
    "REGISTRY",
    "ZOO",
    "AdviseConfig",
    "Backbone",
    "CompareConfig",
    "Comparison",
    "DataError",
    "Embeddings",
    "LrFindConfig",
    "LrFindResult",
    "Plan",
    "Strategy",
    "TrainConfig",
    "TransferModel",
    "TunelabError",
    "advise",
    "compare",
    "embed",
    "export",
    "list_models",
    "load_backbone",
    "lr_find",
    "merge_lora",
    "parse_strategy",
    "prepare",
    "run_advise",
    "set_train_mode",
    "train",
]


def __getattr__(name: str) -> object:
    """Import a public name's module on first use and keep the object, so later lookups are plain attributes."""
    if name == "__version__":
        from importlib.metadata import version  # the installed distribution's metadata: one source of truth

        value: object = version("tunelab")
    elif name in _EXPORTS:
        module = _EXPORTS[name]
        if module in _ALSO_IMPORT:
            import_module(_ALSO_IMPORT[module])
        value = getattr(import_module(module), name)
    else:
        raise AttributeError(f"module 'tunelab' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"__version__"})
