"""Transfer strategies: which parameters of a backbone train, at what learning rate, with what inserted.

Owns the Strategy contract and the Plan it produces (base), what a recipe asks of the loop beyond its groups
(recipe: phases, a probe, an L2-SP pull, a weight mix), the spec parser (parse), the registry (registry), one
file per built-in strategy, and the modules strategies insert (layers: adapters, LoRA).
Adding a strategy = one file with a `@register_strategy` dataclass (the contract is on `Strategy`) + one
import line below; nothing else in tunelab names strategies.

Importing this package loads no torch (the CLI lists the strategies in its help): strategy files are
declarations, and `layers` (torch, PEFT) is imported inside `apply`.

May import: errors, models (type hints only; `models.contract` imports torch).
"""

from __future__ import annotations

from tunelab.strategies.base import ParamGroup, Plan, Strategy, set_train_mode
from tunelab.strategies.registry import (
    REGISTRY,
    parse_strategy,
    register_strategy,
    registered_strategy,
    strategy_keys,
    unregister_strategy,
)

# The built-in strategies register themselves on import. The order below is the order users see them in
# (--help, compare's default grid, its reports): from the linear probe to the from-scratch baseline, the
# recipes beyond the classic four (bitfit, lpft, gradual, wiseft) just before it.
# isort: off
from tunelab.strategies import none  # noqa: F401
from tunelab.strategies import full  # noqa: F401
from tunelab.strategies import retrain  # noqa: F401
from tunelab.strategies import adapter  # noqa: F401
from tunelab.strategies import lora  # noqa: F401
from tunelab.strategies import bitfit  # noqa: F401
from tunelab.strategies import lpft  # noqa: F401
from tunelab.strategies import gradual  # noqa: F401
from tunelab.strategies import wiseft  # noqa: F401
from tunelab.strategies import scratch  # noqa: F401
# isort: on

__all__ = [
    "REGISTRY",
    "ParamGroup",
    "Plan",
    "Strategy",
    "parse_strategy",
    "register_strategy",
    "registered_strategy",
    "set_train_mode",
    "strategy_keys",
    "unregister_strategy",
]
