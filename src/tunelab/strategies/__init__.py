"""The strategy registry. Adding a strategy = one file with a Strategy dataclass + one line here."""

from __future__ import annotations

from .adapter import Adapter
from .base import ParamGroup, Plan, Strategy, set_train_mode
from .full import FullTune
from .lora import LoRA
from .none import NoneTune
from .parse import parse_spec
from .retrain import ReTrain
from .scratch import Scratch

REGISTRY: dict[str, type[Strategy]] = {cls.key: cls for cls in (NoneTune, FullTune, ReTrain, Adapter, LoRA, Scratch)}


def parse_strategy(spec: str) -> Strategy:
    """'none', 'full:decay=0.8', 'retrain:4', 'adapter:16', 'lora:8', 'scratch' -> a Strategy."""
    return parse_spec(spec, REGISTRY)


__all__ = [
    "REGISTRY", "Adapter", "FullTune", "LoRA", "NoneTune", "ParamGroup", "Plan", "ReTrain", "Scratch", "Strategy",
    "parse_strategy", "set_train_mode",
]
