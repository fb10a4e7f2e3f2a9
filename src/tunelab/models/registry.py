"""The model registry: every name `--model` accepts, filled by the files that know how to build them.

Two kinds of entries:

- **named models** (`ZooEntry`, `register_model`): a short name such as `mobilenet_v2` with its family, what
  its weights were trained on, the packaged weights file and `build(pretrained)`. `tunelab models` lists them.
- **model sources** (`ModelSource`, `register_source`): a kind of name, such as `timm:<name>`, `hf:<model id>`,
  a tunelab run directory or a local `save_pretrained` directory, with a test that recognises it and a
  builder.

`load_backbone(name)` looks the name up among the named models first (an exact match), then asks each source
in increasing `order` whether it recognises the name; the first that does builds it. An unknown name is an
error that lists what is registered.

Like timm's `_registry`, this module imports no plugin: the built-in models and sources register themselves
when `tunelab.models.zoo` is imported, and run directories when `tunelab.runs` is. It loads no torch either
(`list_models` imports it when called), so the CLI and settings can import it cheaply.

May import: errors, models.weights (and models.contract, for type hints only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError
from tunelab.models.weights import PackagedFile

if TYPE_CHECKING:
    from tunelab.models.contract import Backbone


@dataclass(frozen=True)
class ZooEntry:
    """A model available by short name."""

    name: str
    """The name users pass to --model."""
    family: str
    """Library the architecture comes from (the family adapter's name for itself)."""
    task: str
    """What the weights were trained on, e.g. 'ImageNet-1k classification'."""
    weights: PackagedFile | None
    """The packaged weights file (None for the built-in random test models)."""
    build: Callable[[bool], Backbone]
    """build(pretrained) -> Backbone; pretrained=False gives the same architecture with random weights."""

    @property
    def source(self) -> str:
        """Where the weights come from, as `tunelab models` shows it."""
        return "built in (random weights)" if self.weights is None else f"package {self.weights.package}"

    @property
    def available(self) -> bool:
        """Whether the weights are installed here (always true for models without packaged weights)."""
        try:
            return self.weights is None or self.weights.path().is_file()
        except TunelabError:
            return False


@dataclass(frozen=True)
class ModelSource:
    """A kind of model name (a prefix, a kind of directory) and how to build the model it names."""

    name: str
    """How users write such a name, e.g. 'timm:<name>' or 'a tunelab run directory' (shown in errors and help)."""
    order: int
    """Sources are asked in increasing order; the first that recognises a name builds it."""
    recognises: Callable[[str], bool]
    """recognises(name) -> whether this source builds `name` (cheap: a prefix or a file check, no loading)."""
    build: Callable[[str, bool, bool], Backbone]
    """build(name, pretrained, trust_remote_code) -> Backbone."""


ZOO: dict[str, ZooEntry] = {}
"""The named models by name, in registration order (the order `tunelab models` lists them in)."""

SOURCES: list[ModelSource] = []
"""The model sources, in the order they are asked (by `order`, then registration)."""


def register_model(entry: ZooEntry) -> ZooEntry:
    """Add a named model; a name registered twice is the author's mistake (ValueError at import)."""
    if not entry.name or entry.name != entry.name.strip():
        raise ValueError(f"model name {entry.name!r} must be non-empty, without surrounding spaces")
    if entry.name in ZOO:
        raise ValueError(f"model '{entry.name}' is already registered")
    ZOO[entry.name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove a named model (for tests and experiments that register one for a while)."""
    if name not in ZOO:
        raise KeyError(f"model '{name}' is not registered")
    del ZOO[name]


def register_source(source: ModelSource) -> ModelSource:
    """Add a model source, placed among the others by its `order`."""
    if any(s.name == source.name for s in SOURCES):
        raise ValueError(f"model source '{source.name}' is already registered")
    SOURCES.append(source)
    SOURCES.sort(key=lambda s: s.order)  # stable: equal orders keep registration order
    return source


def unregister_source(name: str) -> None:
    """Remove a model source by its name."""
    for i, source in enumerate(SOURCES):
        if source.name == name:
            del SOURCES[i]
            return
    raise KeyError(f"model source '{name}' is not registered")


@contextmanager
def registered_model(entry: ZooEntry) -> Iterator[ZooEntry]:
    """Register a named model for the duration of a `with` block, and unregister it afterwards even on error."""
    register_model(entry)
    try:
        yield entry
    finally:
        unregister_model(entry.name)


@contextmanager
def registered_source(source: ModelSource) -> Iterator[ModelSource]:
    """Register a model source for the duration of a `with` block, and unregister it afterwards even on error."""
    register_source(source)
    try:
        yield source
    finally:
        unregister_source(source.name)


def load_backbone(name: str, pretrained: bool = True, trust_remote_code: bool = False) -> Backbone:
    """Build the backbone a model name refers to; pretrained=False keeps the architecture, drops the weights.

    `trust_remote_code` lets a Hugging Face model run the Python code it ships; only the user may say so.
    """
    if name in ZOO:
        return ZOO[name].build(pretrained)
    for source in SOURCES:
        if source.recognises(name):
            return source.build(name, pretrained, trust_remote_code)
    valid = ", ".join([*ZOO, *(source.name for source in SOURCES)])
    raise TunelabError(f"unknown model '{name}'; valid: {valid}")


@dataclass(frozen=True)
class ModelInfo:
    """One row of `tunelab models`."""

    name: str
    """The name users pass to --model."""
    family: str
    """Library the architecture comes from."""
    task: str
    """What the weights were trained on."""
    params: int
    """Parameters of the backbone with its original head (0 when its package is not installed)."""
    source: str
    """Where the weights come from."""
    available: bool
    """Whether the weights are installed here (always true for built-in models)."""


def list_models() -> list[ModelInfo]:
    """The named models, with parameter counts measured on the architecture alone.

    Each architecture is built on torch's meta device: tensors with shapes but no storage, so no weights are
    read or even initialised, and listing takes seconds, not the minute loading them would.
    """
    import torch  # lazy: heavy, and only this function of the registry needs it

    rows = []
    for entry in ZOO.values():
        params = 0
        if entry.available:  # an uninstalled package may also hold what the architecture needs (a config)
            with torch.device("meta"):
                params = sum(p.numel() for p in entry.build(False).model.parameters())
        rows.append(ModelInfo(entry.name, entry.family, entry.task, params, entry.source, entry.available))
    return rows
