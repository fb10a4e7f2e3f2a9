"""Strategy specs as users type them: `key[:value][:field=value]...`, e.g. `retrain:3`, `full:decay=0.8`.

Colons separate the parts so that a comma-separated list (`none,full,retrain:4`) stays unambiguous.
Field names and types come from the strategy dataclass itself, so a new strategy needs no parser code.
Formatting (the reverse) is `Strategy.spec` in base; this module imports base, never the other way round.

May import: errors, strategies.base.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from tunelab.errors import TunelabError
from tunelab.strategies.base import Strategy


def parse_spec(spec: str, registry: dict[str, type[Strategy]]) -> Strategy:
    """Build the strategy a spec names; a clear error for an unknown key, field or value."""
    key, *parts = spec.strip().split(":")
    if key not in registry:
        raise TunelabError(f"unknown strategy '{key}'; valid: {', '.join(registry)}")
    cls = registry[key]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for i, part in enumerate(parts):
        name, sep, raw = part.partition("=")
        if not sep:
            if i > 0 or cls.positional is None:
                usage = f"{key}:<{cls.positional}>" if cls.positional else key
                raise TunelabError(
                    f"strategy '{spec}': unexpected value '{part}'; usage: {usage}[:field=value], "
                    f"fields: {', '.join(fields) or 'none'}"
                )
            name, raw = cls.positional, part
        if name not in fields:
            raise TunelabError(f"strategy '{spec}': {key} has no field '{name}'; fields: {', '.join(fields) or 'none'}")
        values[name] = _convert(raw, hints[name], spec, name)
    return cls(**values)


def _convert(raw: str, annotation, spec: str, name: str):
    """Convert text to a field's type (int, float, bool, or an optional of those)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if type(None) in options and raw.lower() in ("none", "null", "auto", ""):
        return None  # an unset optional field: the strategy works the value out (`auto`) or leaves it off
    kind = next(t for t in options if t is not type(None))
    if kind is bool:
        if raw.lower() in ("true", "yes", "1", "on"):
            return True
        if raw.lower() in ("false", "no", "0", "off"):
            return False
    else:
        try:
            return kind(raw)
        except ValueError:
            pass
    raise TunelabError(f"strategy '{spec}': {name}={raw!r} is not a valid {kind.__name__}")
