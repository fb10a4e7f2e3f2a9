"""tunelab: transfer learning with the classic strategies, measured.

Public API:
- `load_backbone(name, pretrained=True)`: a zoo model in the backbone contract (`Backbone`).
- `prepare(model, strategy, num_classes)`: load, new head, strategy applied -> `Plan` (parameter groups).
- `parse_strategy(spec)`, `REGISTRY`: the strategies (none, full, retrain:K, adapter, lora, scratch).
- `set_train_mode(model)`: train mode except frozen blocks and frozen BatchNorm.
- `merge_lora(model)`: fold LoRA updates into the weights.
- `embed(model, data)`: pooled features, labels and example ids of a data set under any model or run (`Embeddings`).
- `tunelab.export.export(run, out)`: a finished run as an ONNX file (LoRA merged, adapters included).

Any `model` argument also takes a finished run directory: the model that run trained, as a new source.
"""

from tunelab.models.contract import Backbone, TransferModel
from tunelab.embed import Embeddings, embed
from tunelab.errors import DataError, TunelabError
from tunelab.strategies.layers import merge_lora
from tunelab.runs.prepare import prepare
from tunelab.strategies import REGISTRY, Plan, Strategy, parse_strategy, set_train_mode
from tunelab.models.zoo import ZOO, list_models, load_backbone

__version__ = "0.1.0"

__all__ = [
    "REGISTRY", "ZOO", "Backbone", "DataError", "Embeddings", "Plan", "Strategy", "TransferModel", "TunelabError",
    "embed", "list_models", "load_backbone", "merge_lora", "parse_strategy", "prepare", "set_train_mode",
]
