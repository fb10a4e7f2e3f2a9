"""YAML for settings files: read and write plain data with YAML 1.2 scalars, refusing duplicate keys.

A settings file is small and flat, so reading one is bounded before anything is expanded: at most
`MAX_SETTINGS_BYTES` are read, and aliases (`*name`) are refused where they appear, since each one copies
a whole node and a few hundred bytes of nested aliases (a "billion laughs" file) would expand to gigabytes
before validation could reject them.

Knows nothing about dataclasses (`tunelab.settings.fields` turns the mappings into settings). May import
only the standard library, PyYAML, `tunelab.fileio` and `tunelab.errors`.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml

from tunelab.errors import DataError
from tunelab.fileio import read_text

MAX_SETTINGS_BYTES = 1 << 20
"""The largest settings file read (1 MiB): a run's config.yaml, comments included, is about 5 kB."""


def _yaml12_floats(resolver_cls: type) -> None:
    """Also read 1e-3 as a number: YAML 1.1 (PyYAML) wants a dot (1.0e-3), so `lr: 1e-3` would be a string."""
    resolver_cls.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars (only true/false are booleans, 1e-3 is a number) and no duplicate keys.

    YAML 1.1 reads `mixed_precision: no` as false and `lr: 1e-4` as a string; both are easy to write and
    confusing to debug. A repeated key silently keeps the last value, so it is an error instead. An alias
    is refused when the parser meets it, before any node is copied (see the module docstring).
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases (*{event.anchor}) are not allowed in a settings file; write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may legitimately repeat base's keys
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_yaml12_floats(_Loader)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes any string either YAML 1.1 or our loader would read as something else."""


_yaml12_floats(_Dumper)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Unicode line breaks (NEL, LS, PS) only survive escaped, i.e. double-quoted; other styles fold them."""
    style = '"' if any(ch in value for ch in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def type_name(value) -> str:
    """How an error message names the type of a value read from YAML or given in Python."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    names[dict] = "a mapping"
    return "null" if value is None else names.get(type(value), type(value).__name__)


def load_yaml(path: str | Path) -> dict:
    """The mapping at the top of a YAML file (empty file: {}), with errors that point at the line."""
    path = Path(path)
    text = read_text(path, "config file", limit=MAX_SETTINGS_BYTES)
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: plain data only, no aliases
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise DataError(f"invalid YAML: {problem}", path, None if mark is None else mark.line + 1) from None
    except RecursionError:  # [[[[...]]]]: the parser recurses once per level
        raise DataError("invalid YAML: lists or mappings nested too deeply for a settings file", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"the file must be a mapping of setting: value lines, not {type_name(data)}", path)
    return data


def dump_line(name: str, value) -> str:
    """`name: value` as one YAML line that load_yaml reads back to the same value (tuples become lists)."""
    value = list(value) if isinstance(value, tuple) else value  # safe_dump cannot write tuples
    text = yaml.dump({name: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=float("inf"))
    return text.rstrip("\n")
