"""The strategy registry. Adding a strategy = one file with a Strategy dataclass + one line here."""

from __future__ import annotations

from tunelab.strategies.adapter import Adapter
from tunelab.strategies.base import ParamGroup, Plan, Strategy, set_train_mode
from tunelab.strategies.full import FullTune
from tunelab.strategies.lora import LoRA
from tunelab.strategies.none import NoneTune
from tunelab.strategies.parse import parse_spec
from tunelab.strategies.retrain import ReTrain
from tunelab.strategies.scratch import Scratch

REGISTRY: dict[str, type[Strategy]] = {cls.key: cls for cls in (NoneTune, FullTune, ReTrain, Adapter, LoRA, Scratch)}


def parse_strategy(spec: str) -> Strategy:
    """'none', 'full:decay=0.8', 'retrain:4', 'adapter:16', 'lora:8', 'scratch' -> a Strategy."""
    return parse_spec(spec, REGISTRY)


__all__ = [
    "REGISTRY", "Adapter", "FullTune", "LoRA", "NoneTune", "ParamGroup", "Plan", "ReTrain", "Scratch", "Strategy",
    "parse_strategy", "set_train_mode",
]
