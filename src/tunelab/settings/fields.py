"""Settings machinery: frozen dataclasses filled from defaults, then a YAML file, then command-line flags.

A settings dataclass is the single source of truth: flag names, types, `--help` text and the documented
YAML a run saves all come from its fields, the docstring under each field and the limits given with
`setting(...)`, so adding a setting is one line plus its docstring. Every function here is generic over
frozen dataclasses; a command's settings are composed from shared groups (`tunelab.settings.groups`), and
docs are collected through the MRO, so a composed class documents every field it inherits.
Settings are checked where they enter (file or flags) so a typo fails in a second, not after an epoch.

May import only the standard library, PyYAML (through `yaml_io`), `tunelab.fileio` and `tunelab.errors`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import itertools
import math
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.settings.yaml_io import dump_line, load_yaml, type_name

COMMAND_LINE_ONLY = frozenset({"trust_remote_code"})
"""Settings a config file may not turn on: running a model's own code needs the flag typed by the user, not a
line in a YAML file that may have come with someone else's run."""


@dataclass(frozen=True)
class Limits:
    """What user input for one field must respect; kept in the field's metadata by `setting`."""

    low: float | None = None
    """Smallest allowed number (inclusive); None = unbounded."""
    high: float | None = None
    """Largest allowed number (inclusive); None = unbounded."""
    choices: tuple[str, ...] = ()
    """Allowed text values; empty = any text."""


def setting(default: typing.Any = dataclasses.MISSING, *, low=None, high=None, choices: Sequence[str] = ()):
    """A field's default together with its limits, e.g. `epochs: int = setting(5, low=1)`.

    Limits are checked on values from files and flags (not in __init__, so library callers and tests may
    build any value). Choices that come from a registry in a higher layer (task names) are not known here:
    commands pass them to `add_arguments` / `resolve` instead.
    """
    return dataclasses.field(default=default, metadata={"limits": Limits(low, high, tuple(choices))})


# ---------------------------------------------------------------- field introspection


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # groups first; a class lower in the MRO overrides its bases' docs
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined in a REPL or exec'd string: no docs, nothing else breaks
            continue
        body = ast.parse(source).body[0].body
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field, by name ('' if none): the one place settings are documented."""
    return dict(_field_docs(cls))


def _options(annotation) -> tuple:
    """The member types of `X | None` / `Optional[X]`, or just (annotation,)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def _kind(annotation):
    """The non-None type of a field: bool, int, float, str or tuple[X, ...]."""
    kinds = [t for t in _options(annotation) if t is not type(None)]
    if len(kinds) == 1:
        kind = kinds[0]
        if kind in (bool, int, float, str):
            return kind
        args = typing.get_args(kind)
        if typing.get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):
            return kind
    raise TypeError(
        f"unsupported config field type {annotation!r}: use bool, int, float, str, tuple[X, ...] or X | None"
    )


def _optional(annotation) -> bool:
    return type(None) in _options(annotation)


@functools.cache
def _hints(cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)  # walks the MRO, so fields inherited from groups resolve too
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field):
    """The field's default value, or MISSING for a required field."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _required(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if _default(f) is dataclasses.MISSING]


def _limits(f: dataclasses.Field) -> Limits:
    return f.metadata.get("limits", Limits())


def allowed_values(f: dataclasses.Field, choices: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """The text values `f` accepts (empty = any): `choices[f.name]` when given, else the field's own choices.

    Choices given by a command come from a registry (for example the task names); the field's default
    (say "auto") is always allowed too, since a default that fails validation would be a bug.
    """
    if choices and f.name in choices:
        given = tuple(choices[f.name])
        default = _default(f)
        return given if not isinstance(default, str) or default in given else (default, *given)
    return _limits(f).choices


def shared_settings(config, cls: type) -> dict:
    """`config`'s values of every field that `cls` shares with it through a common group.

    A group is a dataclass base of both classes (`CompareConfig` and `TrainConfig` both compose the data,
    loop, cache ... groups). A field merely named alike in both (each command's own `out`) is not shared.
    This is how one command hands its settings to another without listing them.
    """
    groups = [k for k in type(config).__mro__[1:] if dataclasses.is_dataclass(k) and issubclass(cls, k)]
    names = {f.name for group in groups for f in dataclasses.fields(group)}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in names}


# ---------------------------------------------------------------- validation

_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(kind, optional: bool) -> str:
    if typing.get_origin(kind) is tuple:
        text = f"a list of {_EXPECTED[typing.get_args(kind)[0]].removeprefix('a ').removeprefix('an ')}s"
    else:
        text = _EXPECTED[kind]
    return text + " or null" if optional else text


def _convert_scalar(value, kind):
    """`value` as `kind`, or raise ValueError. Strict: no text parsing, and bool is not an int."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError


def _convert(value, annotation):
    if value is None and _optional(annotation):
        return None
    kind = _kind(annotation)
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError
        return tuple(_convert_scalar(v, typing.get_args(kind)[0]) for v in value)
    return _convert_scalar(value, kind)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_limits(f: dataclasses.Field, value, source: str, choices) -> None:
    allowed, limits = allowed_values(f, choices), _limits(f)
    low, high = limits.low, limits.high
    for v in value if isinstance(value, tuple) else (value,):
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):  # .nan passes every bound check, then poisons training
            raise TunelabError(f"{source}: {f.name} must be a finite number; got {v!r}")
        if allowed and v not in allowed:
            raise TunelabError(f"{source}: {f.name} must be one of {', '.join(allowed)}; got {v!r}")
        if isinstance(v, (int, float)) and ((low is not None and v < low) or (high is not None and v > high)):
            limits = (
                f"between {low} and {high}"
                if low is not None and high is not None
                else (f"at least {low}" if low is not None else f"at most {high}")
            )
            raise TunelabError(f"{source}: {f.name} must be {limits}; got {v!r}")


def validate(cls: type, values: dict, source: str, choices: Mapping[str, Sequence[str]] | None = None) -> dict:
    """Check names, types and limits of settings for `cls`; return them converted (ints to float).

    `source` says where the values came from (a file path, "command line") for the error messages;
    `choices` adds allowed values known only to the caller (see `allowed_values`).
    """
    hints, fields = _hints(cls), _fields(cls)
    out = {}
    for key, value in values.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), hints, n=1)
            # a close match is the likely fix; the whole list (40+ keys) only when there is none
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(hints)}"
            raise TunelabError(f"{source}: unknown key '{key}'; {hint}")
        annotation = hints[key]
        try:
            converted = _convert(value, annotation)
        except ValueError:
            expected = _describe(_kind(annotation), _optional(annotation))
            hint = ""
            if isinstance(value, str) and _kind(annotation) in (int, float) and _is_number(value):
                hint = " (write the number without quotes)"
            given = f"{value!r} ({type_name(value)})"
            raise TunelabError(f"{source}: {key} must be {expected}, got {given}{hint}") from None
        _check_limits(fields[key], converted, source, choices)
        out[key] = converted
    return out


def _build(cls: type, values: dict, how_to_give: str):
    missing = [name for name in _required(cls) if name not in values]
    if missing:
        name = missing[0]
        raise TunelabError(f"missing required setting '{name}' ({how_to_give.format(flag=_flag(name), name=name)})")
    return cls(**values)


# ---------------------------------------------------------------- YAML files


def to_yaml(config) -> str:
    """`config` as YAML, every field in order with its docstring as a comment; from_yaml_file reads it back equal."""
    docs = field_docs(type(config))
    lines = []
    for f in dataclasses.fields(config):
        if docs[f.name]:
            lines.extend(f"# {line}".rstrip() for line in docs[f.name].splitlines())
        lines.append(dump_line(f.name, getattr(config, f.name)))
    return "\n".join(lines) + "\n"


def from_yaml_file(cls: type, path: str | Path, choices: Mapping[str, Sequence[str]] | None = None):
    """An instance of `cls` from a YAML file (missing fields take their defaults), checked like user input."""
    values = validate(cls, load_yaml(path), str(path), choices)
    return _build(cls, values, f"put {{name}}: in {path}")


# ---------------------------------------------------------------- command line


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "empty"
    return repr(value) if value == "" else str(value)


def _parse_text(annotation, name: str):
    """The argparse `type=` for a field: text to value, 'none' for None when the field allows it."""
    kind, optional = _kind(annotation), _optional(annotation)

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            if typing.get_origin(kind) is tuple:
                item = typing.get_args(kind)[0]
                return tuple(item(part.strip()) for part in text.split(",") if part.strip())
            return kind(text)
        except ValueError:
            expected = _describe(kind, False).replace("a list of", "a comma-separated list of")
            raise argparse.ArgumentTypeError(
                f"expected {expected}{' or none' if optional else ''}, got {text!r}"
            ) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: Iterable[str] = (),
    choices: Mapping[str, Sequence[str]] | None = None,
    notes: Mapping[str, str] | None = None,
) -> None:
    """One --flag per field of `cls` (plus --config), all defaulting to "not given" so resolve() can layer them.

    Defaults are argparse.SUPPRESS: a flag is in the namespace only if the user typed it, which is how a flag
    that repeats a default still overrides the config file. Caller-added arguments for skipped fields should
    default to SUPPRESS too. `choices` (field name -> allowed values, e.g. the registered task names) shows
    in the metavar; pass the same mapping to resolve(), which checks it. `notes` (field name -> text) is
    added to a field's help, for what only the caller knows (say, the registered strategies' summaries).
    """
    skip = set(skip)
    docs = field_docs(cls)
    hints = _hints(cls)
    parser.add_argument(
        "--config", metavar="PATH", default=None, help="YAML file with any of these settings; flags override it"
    )
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = _default(f)
        annotation = hints[f.name]
        if default is dataclasses.MISSING:
            shown = "required"
        elif default is None and _kind(annotation) is bool:
            shown = "default: unset"  # --x / --no-x cannot say "none"; unset is reachable only by leaving it out
        else:
            shown = f"default: {_show(default)}"
        note = f" {notes[f.name]}" if notes and f.name in notes else ""
        help_text = f"{docs[f.name]}{note} ({shown})".lstrip().replace("%", "%%")
        if _kind(annotation) is bool:
            parser.add_argument(
                _flag(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        allowed = allowed_values(f, choices)
        metavar = "{" + ",".join(allowed) + "}" if allowed else f.name.upper()
        if _optional(annotation):
            metavar += "|none"
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            type=_parse_text(annotation, f.name),
            default=argparse.SUPPRESS,
            metavar=metavar,
            help=help_text,
        )


def _as_text(value, name: str, optional: bool) -> str:
    """One value as the text `_parse_text` reads back to it; a TunelabError for text no flag can carry."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        items = [_as_text(v, name, False) for v in value]
        if any(not item or item != item.strip() or "," in item for item in items):
            raise TunelabError(
                f"{name}: {value!r} cannot be passed as a comma-separated flag (an item is empty, has a comma or "
                "surrounding spaces)"
            )
        return ",".join(items)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to the same float
    text = str(value)
    if optional and text.lower() in ("none", "null"):
        raise TunelabError(f"{name}: the text {text!r} would read back as none on the command line")
    return text


def to_argv(config) -> list[str]:
    """`config` as the flags that `add_arguments` + `resolve` read back into an equal instance.

    `--name=value` for every field that differs from its default (the `=` form, so a value starting with
    '-' is not taken for a flag), booleans as --name / --no-name, tuples comma-joined, None as `none`.
    Settings in COMMAND_LINE_ONLY are flags like any other here: this is how one command starts another
    with exactly its settings (compare runs each training run as `tunelab train <these flags>`).
    """
    hints = _hints(type(config))
    argv = []
    for f in dataclasses.fields(config):
        value, default = getattr(config, f.name), _default(f)
        if value == default and type(value) is type(default):
            continue
        annotation = hints[f.name]
        if _kind(annotation) is bool:
            if value is None:  # a bool field whose default is not None: no flag says "unset"
                raise TunelabError(f"{f.name}: unset cannot be given on the command line")
            argv.append(_flag(f.name) if value else "--no-" + _flag(f.name)[2:])
        else:
            argv.append(f"{_flag(f.name)}={_as_text(value, f.name, _optional(annotation))}")
    return argv


def resolve(cls: type, args: argparse.Namespace, choices: Mapping[str, Sequence[str]] | None = None):
    """The instance of `cls` the user asked for: field defaults < the --config file < flags actually given.

    `choices` is the mapping given to add_arguments: values outside it are refused from the file and flags.
    """
    values = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        values.update(validate(cls, load_yaml(config_path), str(config_path), choices))
        for name in sorted(COMMAND_LINE_ONLY & {k for k, v in values.items() if v}):
            raise TunelabError(f"{config_path}: {name} can only be turned on on the command line ({_flag(name)})")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(validate(cls, given, "command line", choices))
    return _build(cls, values, "give {flag} or put {name}: in the config file")
