"""The strategy registry: strategy keys -> Strategy classes, filled by the strategies themselves.

Each strategy file decorates its class with `@register_strategy` (timm's `@register_model`, PEFT's
`register_peft_method`); this module imports no strategy. `tunelab.strategies` imports the built-in ones,
so importing the package fills the registry; everything that lists strategies (the CLI's help, compare's
default grid, advise's candidates, the contract tests) reads `REGISTRY`, in registration order.

May import: errors, strategies.base, strategies.parse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from tunelab.strategies.base import Strategy
from tunelab.strategies.parse import parse_spec

S = TypeVar("S", bound=type[Strategy])

REGISTRY: dict[str, type[Strategy]] = {}
"""Every registered strategy by key, in the order they were registered (the order users see them in)."""


def register_strategy(cls: S) -> S:
    """Class decorator: add a strategy to the registry after checking it declares what the contract asks.

    Mistakes here are the strategy author's, so they raise TypeError/ValueError at import, not a user error.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a Strategy subclass")
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} must be a @dataclass(frozen=True) (put @register_strategy above it)")
    key = getattr(cls, "key", None)
    if not isinstance(key, str) or not key or key != key.strip().lower() or any(c in key for c in ":,= "):
        raise ValueError(f"{cls.__name__}.key must be a lowercase name without ':', ',', '=' or spaces; got {key!r}")
    if key in REGISTRY:
        raise ValueError(f"strategy '{key}' is already registered ({REGISTRY[key].__name__})")
    names = [f.name for f in dataclasses.fields(cls)]
    if cls.positional is not None and cls.positional not in names:
        raise ValueError(
            f"{cls.__name__}.positional = {cls.positional!r} is not one of its fields ({', '.join(names)})"
        )
    if not cls.summary:
        raise ValueError(f"{cls.__name__} needs a one-line `summary` for --help")
    REGISTRY[key] = cls
    return cls


def unregister_strategy(key: str) -> None:
    """Remove a strategy from the registry (for tests and experiments that register one for a while)."""
    if key not in REGISTRY:
        raise KeyError(f"strategy '{key}' is not registered")
    del REGISTRY[key]


@contextmanager
def registered_strategy(cls: S) -> Iterator[S]:
    """Register `cls` for the duration of a `with` block, and unregister it afterwards even on error."""
    register_strategy(cls)
    try:
        yield cls
    finally:
        unregister_strategy(cls.key)


def parse_strategy(spec: str) -> Strategy:
    """'none', 'full:decay=0.8', 'retrain:4', 'adapter:16', 'lora:8', 'scratch' -> a Strategy."""
    return parse_spec(spec, REGISTRY)


def strategy_keys() -> tuple[str, ...]:
    """The registered keys in registration order: the default for every list of strategies."""
    return tuple(REGISTRY)
