"""Run settings: one frozen dataclass, filled from defaults, then a YAML file, then command-line flags.

The dataclass is the single source of truth: flag names, types, `--help` text and the documented YAML a run
saves all come from its fields and their docstrings, so adding a setting is one line plus its docstring.
Every function here is generic over frozen dataclasses, so other commands can define their own configs.
Settings are checked where they enter (file or flags) so a typo fails in a second, not after an epoch.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunelab.fileio import read_text
from tunelab.errors import DataError, TunelabError

CHOICES: dict[str, tuple[str, ...]] = {
    "task": ("auto", "image-classification", "text-classification", "token-classification", "relation-classification"),
    "adversarial": ("fgm", "pgd"),
    "mixed_precision": ("auto", "no", "fp16", "bf16"),
}
"""Allowed values of text settings, by field name: a name means the same setting in every command's config."""

BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "epochs": (1, None),
    "batch_size": (1, None),
    "lr": (0, None),
    "weight_decay": (0, None),
    "warmup": (0, 1),
    "grad_clip": (0, None),
    "patience": (1, None),
    "cache_memory_mb": (0, None),
    "max_length": (1, None),
    "val_fraction": (0, 1),
    "num_workers": (0, None),
    "train_fraction": (0, 1),
    "folds": (2, None),
    "fold": (0, None),
    "adv_epsilon": (0, None),
    "adv_steps": (1, None),
}
"""Inclusive (low, high) limits of numeric settings, by field name; None means unbounded."""

COMMAND_LINE_ONLY = frozenset({"trust_remote_code"})
"""Settings a config file may not turn on: running a model's own code needs the flag typed by the user, not a
line in a YAML file that may have come with someone else's run."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything `tunelab train` needs; saved as config.yaml in the run so eval and --resume see the same run."""

    model: str
    """Model: zoo name (see `tunelab models`), timm:<name>, hf:<id>, a model directory or a run directory."""
    strategy: str = "full"
    """Transfer strategy spec, e.g. none, full, retrain:3, adapter, lora:8, scratch."""
    data: str = ""
    """Training data path: an image folder tree or a text file (CSV/TSV/JSONL)."""
    val_data: str | None = None
    """Validation data path; none = split val_fraction off the training data."""
    out: str = "runs/run"
    """Run directory: config, metrics, checkpoints and the trained weights go here."""
    task: str = "auto"
    """Task: auto (guessed from the data), image-, text-, token- (NER) or relation-classification."""
    epochs: int = 5
    """Passes over the training data."""
    batch_size: int = 32
    """Examples per optimisation step."""
    lr: float | None = None
    """Head learning rate; none = the strategy's default."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and norm weights)."""
    warmup: float = 0.1
    """Fraction of steps with linear warmup before cosine decay."""
    grad_clip: float | None = 1.0
    """Clip the gradient norm to this value; none = no clipping."""
    patience: int | None = None
    """Early stopping: epochs without validation improvement before stopping; none = off."""
    seed: int = 0
    """Random seed for the split, initialisation, shuffling and augmentation."""
    augment: bool | None = None
    """Image train augmentation; unset = automatic: on unless a frozen prefix can be cached."""
    cache: bool = True
    """Cache the frozen prefix's outputs, so frozen blocks run once instead of every epoch."""
    cache_memory_mb: int = 2048
    """Memory for the feature cache in MB; beyond this it spills to disk."""
    max_length: int | None = None
    """Tokens per text example; none = the model's default."""
    text_column: str | None = None
    """Text column of a table; none = detected from the header."""
    label_column: str = "label"
    """Label column of a table."""
    val_fraction: float = 0.2
    """Fraction of the training data held out for validation when no val_data is given."""
    train_fraction: float = 1.0
    """Train on this stratified fraction of the training split; the validation set stays the same."""
    folds: int | None = None
    """K-fold cross-validation: pool train and val, split them into this many stratified folds; none = off."""
    fold: int = 0
    """Which fold (0 .. folds-1) is the validation set when folds is set."""
    mixed_precision: str = "auto"
    """Mixed precision: auto (bf16/fp16 on a GPU that supports it), no, fp16 or bf16."""
    num_workers: int = 0
    """Data loader worker processes; 0 = load in the main process."""
    resume: bool = False
    """Continue an interrupted run in `out` from its last completed epoch."""
    trust_remote_code: bool = False
    """Let a Hugging Face model run the Python code it ships (command line only; off by default)."""
    adversarial: str | None = None
    """Adversarial training on the word embeddings of a text model: fgm or pgd; none = off."""
    adv_epsilon: float = 1.0
    """L2 size of the adversarial perturbation of the embedding rows a batch uses."""
    adv_steps: int = 3
    """PGD: attack steps per batch (FGM takes one)."""


# ---------------------------------------------------------------- field introspection


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # subclasses override their bases' docs
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined in a REPL or exec'd string: no docs, nothing else breaks
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:]):
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
        if typing.get_origin(kind) is tuple and len(args := typing.get_args(kind)) == 2 and args[1] is Ellipsis:
            if args[0] in (int, float, str):
                return kind
    raise TypeError(
        f"unsupported config field type {annotation!r}: use bool, int, float, str, tuple[X, ...] or X | None"
    )


def _optional(annotation) -> bool:
    return type(None) in _options(annotation)


@functools.cache
def _hints(cls: type) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field):
    """The field's default value, or MISSING for a required field."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _required(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if _default(f) is dataclasses.MISSING]


# ---------------------------------------------------------------- validation

_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(kind, optional: bool) -> str:
    if typing.get_origin(kind) is tuple:
        text = f"a list of {_EXPECTED[typing.get_args(kind)[0]].removeprefix('a ').removeprefix('an ')}s"
    else:
        text = _EXPECTED[kind]
    return text + " or null" if optional else text


def _type_name(value) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    names[dict] = "a mapping"
    return "null" if value is None else names.get(type(value), type(value).__name__)


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


def _check_choice_and_bounds(name: str, value, source: str) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):  # .nan passes every bound check, then poisons training
            raise TunelabError(f"{source}: {name} must be a finite number; got {v!r}")
        if name in CHOICES and v not in CHOICES[name]:
            raise TunelabError(f"{source}: {name} must be one of {', '.join(CHOICES[name])}; got {v!r}")
        low, high = BOUNDS.get(name, (None, None))
        if isinstance(v, (int, float)) and ((low is not None and v < low) or (high is not None and v > high)):
            limits = f"between {low} and {high}" if low is not None and high is not None else (
                f"at least {low}" if low is not None else f"at most {high}"
            )
            raise TunelabError(f"{source}: {name} must be {limits}; got {v!r}")


def validate(cls: type, values: dict, source: str) -> dict:
    """Check names, types and allowed values of settings for `cls`; return them converted (ints to float).

    `source` says where the values came from (a file path, "command line") for the error messages.
    """
    hints = _hints(cls)
    out = {}
    for key, value in values.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), hints, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TunelabError(f"{source}: unknown key '{key}'{hint}; valid keys: {', '.join(hints)}")
        annotation = hints[key]
        try:
            converted = _convert(value, annotation)
        except ValueError:
            expected = _describe(_kind(annotation), _optional(annotation))
            hint = ""
            if isinstance(value, str) and _kind(annotation) in (int, float) and _is_number(value):
                hint = " (write the number without quotes)"
            given = f"{value!r} ({_type_name(value)})"
            raise TunelabError(f"{source}: {key} must be {expected}, got {given}{hint}") from None
        _check_choice_and_bounds(key, converted, source)
        out[key] = converted
    return out


def _build(cls: type, values: dict, how_to_give: str):
    missing = [name for name in _required(cls) if name not in values]
    if missing:
        name = missing[0]
        raise TunelabError(f"missing required setting '{name}' ({how_to_give.format(flag=_flag(name), name=name)})")
    return cls(**values)


# ---------------------------------------------------------------- YAML


def _yaml12_floats(resolver_cls: type) -> None:
    """Also read 1e-3 as a number: YAML 1.1 (PyYAML) wants a dot (1.0e-3), so `lr: 1e-3` would be a string."""
    resolver_cls.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars (only true/false are booleans, 1e-3 is a number) and no duplicate keys.

    YAML 1.1 reads `mixed_precision: no` as false and `lr: 1e-4` as a string; both are easy to write and
    confusing to debug. A repeated key silently keeps the last value, so it is an error instead.
    """

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


def load_yaml(path: str | Path) -> dict:
    """The mapping at the top of a YAML file (empty file: {}), with errors that point at the line."""
    path = Path(path)
    text = read_text(path, "config file")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader: plain data only
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise DataError(f"invalid YAML: {problem}", path, None if mark is None else mark.line + 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"the file must be a mapping of setting: value lines, not {_type_name(data)}", path)
    return data


def _yaml_value(value):
    return list(value) if isinstance(value, tuple) else value  # safe_dump cannot write tuples


def to_yaml(config) -> str:
    """`config` as YAML, every field in order with its docstring as a comment; from_yaml_file reads it back equal."""
    docs = field_docs(type(config))
    lines = []
    for f in dataclasses.fields(config):
        if docs[f.name]:
            lines.extend(f"# {line}".rstrip() for line in docs[f.name].splitlines())
        value = {f.name: _yaml_value(getattr(config, f.name))}
        text = yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=float("inf"))
        lines.append(text.rstrip("\n"))
    return "\n".join(lines) + "\n"


def from_yaml_file(cls: type, path: str | Path):
    """An instance of `cls` from a YAML file (missing fields take their defaults), checked like user input."""
    values = validate(cls, load_yaml(path), str(path))
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
        return ",".join(map(str, value))
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


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: typing.Iterable[str] = ()) -> None:
    """One --flag per field of `cls` (plus --config), all defaulting to "not given" so resolve() can layer them.

    Defaults are argparse.SUPPRESS: a flag is in the namespace only if the user typed it, which is how a flag
    that repeats a default still overrides the config file. Caller-added arguments for skipped fields should
    default to SUPPRESS too.
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
        help_text = f"{docs[f.name]} ({shown})".lstrip().replace("%", "%%")
        if _kind(annotation) is bool:
            parser.add_argument(
                _flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        metavar = "{" + ",".join(CHOICES[f.name]) + "}" if f.name in CHOICES else f.name.upper()
        if _optional(annotation):
            metavar += "|none"
        parser.add_argument(
            _flag(f.name), dest=f.name, type=_parse_text(annotation, f.name), default=argparse.SUPPRESS,
            metavar=metavar, help=help_text,
        )


def resolve(cls: type, args: argparse.Namespace):
    """The instance of `cls` the user asked for: field defaults < the --config file < flags actually given."""
    values = {}
    config_path = getattr(args, "config", None)
    if config_path is not None:
        values.update(validate(cls, load_yaml(config_path), str(config_path)))
        for name in sorted(COMMAND_LINE_ONLY & {k for k, v in values.items() if v}):
            raise TunelabError(f"{config_path}: {name} can only be turned on on the command line ({_flag(name)})")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(validate(cls, given, "command line"))
    return _build(cls, values, "give {flag} or put {name}: in the config file")
