"""What every strategy is and produces: the Strategy contract, the Plan of parameter groups, the train/eval rule.

A strategy decides three things about a backbone: which parameters train, at what fraction of the head's
learning rate, and which modules it inserts. The training loop only ever sees the resulting parameter
groups; it knows nothing about strategies.

May import: errors and (for type hints only) models. No torch at import time: the CLI lists the strategies
in its help, so declaring them must stay cheap; the functions that need torch types import it when called.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from tunelab.strategies.recipe import Anchor, Phase, Probe, WeightMix

if TYPE_CHECKING:
    from torch import nn

    from tunelab.models.contract import Backbone


DEFAULT_WEIGHT_DECAY = 0.01
"""Weight decay of `Plan.optimizer_groups` when none is given: the default of the --weight-decay setting
(strategies may not import settings; a test checks the two agree)."""


@dataclass(frozen=True)
class ParamGroup:
    """Parameters trained together at one learning-rate scale."""

    name: str
    """'head', 'backbone', 'block.3', 'adapters', 'lora'..."""
    names: tuple[str, ...]
    """Dotted parameter names in the model."""
    params: tuple[nn.Parameter, ...] = field(repr=False)
    """The parameters themselves (same order as names)."""
    lr_scale: float
    """Multiplier on the base (head) learning rate."""


@dataclass(frozen=True)
class Inserted:
    """One module a strategy added to a block, for the plan and the checkpoint."""

    block: int
    """Index of the block it sits in."""
    path: str
    """Dotted name of the inserted module in the model."""
    description: str
    """Short human description, e.g. 'adapter 384->24->384'."""
    params: tuple[str, ...] = ()
    """Dotted names of the parameters the insertion added (not those of the layer it wraps)."""


def inserted_params(inserted: list[Inserted]) -> frozenset[str]:
    """Names of the parameters a list of insertions added: what an adapter-like strategy trains."""
    return frozenset(name for module in inserted for name in module.params)


@dataclass
class Plan:
    """The result of applying a strategy to a backbone: what trains, how fast, what was inserted."""

    strategy: Strategy
    """The strategy that made the plan."""
    backbone: Backbone
    """The backbone, already modified (frozen flags set, modules inserted)."""
    groups: list[ParamGroup]
    """Trainable parameter groups; every parameter with requires_grad is in exactly one."""
    inserted: list[Inserted] = field(default_factory=list)
    """Modules the strategy added."""

    @property
    def inserted_params(self) -> frozenset[str]:
        """Names of every parameter the strategy added to the backbone (none for strategies that only freeze)."""
        return inserted_params(self.inserted)

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for g in self.groups for p in g.params)

    @property
    def total_params(self) -> int:
        return sum(p.numel() for p in self.backbone.model.parameters())

    @property
    def frozen_prefix(self) -> int:
        """Number of leading blocks with nothing to train: their output can be computed once and cached."""
        for i, block in enumerate(self.backbone.blocks):
            if any(p.requires_grad for p in block.parameters()):
                return i
        return len(self.backbone.blocks)

    @property
    def cached_prefix(self) -> int:
        """The frozen prefix worth caching: 0 when it is only table lookups (see Backbone.lookup_blocks)."""
        k = self.frozen_prefix
        return k if k > self.backbone.lookup_blocks else 0

    def summary_line(self) -> str:
        """The PEFT-style one-line summary printed at the start of every run."""
        trainable, total = self.trainable_params, self.total_params
        return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}"

    # What the strategy asks beyond its groups (strategies.recipe), derived from it each time: a task that
    # rebuilds the Plan (Task.finish) keeps them. `groups`, the counts and the checkpoint are the union over
    # the phases: every parameter that trains in some phase trains "in the plan".

    def phases(self, epochs: int) -> tuple[Phase, ...]:
        """The run's phases for `epochs` epochs (one, with nothing frozen, for a strategy without phases)."""
        return self.strategy.phases(self, epochs)

    @property
    def probe(self) -> Probe | None:
        """A linear probe of the head before epoch 1, or None."""
        return self.strategy.probe()

    @property
    def anchor(self) -> Anchor | None:
        """An L2-SP pull toward the starting weights, or None."""
        return self.strategy.anchor(self)

    @property
    def weight_mix(self) -> WeightMix | None:
        """A WiSE-FT interpolation after training, or None."""
        return self.strategy.weight_mix(self)

    @contextmanager
    def in_phase(self, phase: Phase) -> Iterator[None]:
        """Freeze the phase's groups for the `with` block, and make them trainable again after it (even on error).

        Inside, `frozen_prefix`, `set_train_mode` and the optimizer (which skips parameters without a gradient)
        all see the phase; outside, the plan is its union again, which is what is saved, counted and shown.
        """
        frozen = [p for g in self.groups if g.name in phase.frozen for p in g.params]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def optimizer_groups(self, lr: float, weight_decay: float = DEFAULT_WEIGHT_DECAY) -> list[dict]:
        """torch.optim parameter groups: lr scaled per group; no weight decay on biases and norm weights.

        `weight_decay` defaults to what `tunelab train` uses (DEFAULT_WEIGHT_DECAY), so the library and the
        CLI train the same way unless told otherwise.
        """
        out = []
        anchored = self.anchor.groups if self.anchor else frozenset()  # L2-SP replaces their weight decay
        for g in self.groups:
            decay = [p for p in g.params if p.ndim > 1]
            no_decay = [p for p in g.params if p.ndim <= 1]
            wd_g = 0.0 if g.name in anchored else weight_decay
            for params, wd, suffix in ((decay, wd_g, ""), (no_decay, 0.0, ".no_decay")):
                if params:
                    out.append({"params": params, "lr": lr * g.lr_scale, "weight_decay": wd, "name": g.name + suffix})
        return out


class Strategy(ABC):
    """A transfer strategy: a small frozen dataclass whose `apply` turns a backbone into a Plan.

    The extension contract. A new strategy is one file holding one class, decorated with
    `@register_strategy` (tunelab.strategies.registry), plus one import line in `tunelab/strategies/__init__.py`;
    the CLI's help and choices, compare's default grid, advise's candidates, `inspect` and the contract tests
    all read it from the registry. The class:

    - is a `@dataclass(frozen=True)`; its fields are the strategy's settings, each with a default and a
      one-line docstring. Their types (int, float, bool or an optional of one) are all the spec parser
      needs: `key:VALUE:field=value` is built from the dataclass, no parsing code per strategy;
    - declares `key` (the name users type: lowercase, no ':' or ','), `summary` (one line for `--help`),
      optionally `positional` (the field `key:VALUE` sets), `pretrained` (False only when the backbone must
      start from random weights, as scratch does) and `default_lr` (the head learning rate when none is
      given);
    - implements `apply(backbone) -> Plan`, which modifies `backbone` in place and returns:
      - `groups`: every parameter that trains (requires_grad True) in exactly one ParamGroup, the head in
        one named 'head' at lr_scale 1.0 (`head_group`), everything else frozen (requires_grad False);
      - `inserted`: one `Inserted` per module it added, naming the parameters that module brought, so
        `inspect` and the checkpoint can tell inserted weights from pretrained ones without guessing from
        names;
      - inserted modules must leave the logits unchanged at insertion (zero-initialised output), so the
        adapted model starts as the pretrained one.
    - raises TunelabError, with what to do instead, for a setting or backbone it cannot work with.

    `apply` must not put modules in train or eval mode: `set_train_mode` is the one rule, applied by the loop.

    Optionally, a recipe beyond one assignment of groups (the declarations are in `strategies.recipe`, carried
    out by `runs.recipe`): `phase_starts` + `phases` (groups frozen from some epoch on), `probe` (a linear probe
    of the head before epoch 1), `anchor` (an L2-SP pull toward the starting weights) and `weight_mix` (WiSE-FT
    after training). Each defaults to nothing; the Plan's groups stay the union of what trains in any phase.
    Importing a strategy file must not import torch or PEFT (the CLI lists strategies in its help): import
    the torch-heavy helpers in `tunelab.strategies.layers` inside `apply`, and `Backbone` only under
    TYPE_CHECKING.
    """

    key: ClassVar[str]
    """The name users type (`--strategy KEY[:VALUE][:field=value]`)."""
    positional: ClassVar[str | None] = None
    """The field that `key:VALUE` sets, or None when the strategy takes no positional value."""
    pretrained: ClassVar[bool] = True
    """Whether the backbone is loaded with its pretrained weights (False: random initialisation)."""
    default_lr: ClassVar[float] = 1e-3
    """The head learning rate used when the user gives none."""
    edits_pretrained: ClassVar[bool] = False
    """Whether the new weights it inserts are edits of pretrained weights (LoRA's B A is added to W and merges
    into it): they move the pretrained function as fine-tuning does, so a task's higher lr for plans that train
    only new weights (`Task.new_weights_lr`) is not theirs."""
    summary: ClassVar[str] = ""
    """One line for `--help`: what trains and what stays frozen."""

    @abstractmethod
    def apply(self, backbone: Backbone) -> Plan:
        """Freeze, insert and group parameters on `backbone` (modified in place)."""

    def spec(self) -> str:
        """The string that parses back to this strategy, e.g. 'retrain:3' or 'full:decay=0.8'."""
        return format_spec(self)

    def phase_starts(self, epochs: int) -> tuple[int, ...]:
        """0-based epochs at which a phase begins, first 0; the same for every model, so a report can mark the
        switches from the spec alone. Raises TunelabError when a phase the user asked for does not fit."""
        return (0,)

    def phases(self, plan: Plan, epochs: int) -> tuple[Phase, ...]:
        """One Phase per start of `phase_starts(epochs)`, naming the groups each freezes."""
        return (Phase(0, "everything the plan trains"),)

    def probe(self) -> Probe | None:
        """A linear probe of the head before epoch 1 (LP-FT), or None."""
        return None

    def anchor(self, plan: Plan) -> Anchor | None:
        """Groups pulled toward their starting weights instead of weight decay (L2-SP), or None."""
        return None

    def weight_mix(self, plan: Plan) -> WeightMix | None:
        """Groups interpolated between their start and trained weights after training (WiSE-FT), or None."""
        return None


def format_spec(strategy: Strategy) -> str:
    """The spec that parses back to `strategy`, listing only fields that differ from their defaults."""
    parts = [strategy.key]
    fields = sorted(dataclasses.fields(strategy), key=lambda f: f.name != strategy.positional)
    for f in fields:
        value = getattr(strategy, f.name)
        if value != f.default:
            parts.append(str(value) if f.name == strategy.positional else f"{f.name}={value}")
    return ":".join(parts)


def batchnorm_types() -> tuple[type, ...]:
    """The BatchNorm layer classes, whose running statistics move in train mode even when their weights are frozen."""
    from torch import nn  # lazy: torch is only needed once there is a model to look at

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def set_train_mode(model: nn.Module) -> None:
    """Put the model in training mode, except what is frozen: the one rule, applied explicitly by the loop.

    - a block with no trainable parameter runs in eval mode (no dropout, BatchNorm statistics fixed), so a
      frozen prefix is a pure function of its input and can be cached;
    - a BatchNorm layer whose affine parameters are frozen runs in eval mode: its running statistics never
      move (timm's `freeze`, fastai's `train_bn=False`). A strategy that wants BatchNorm statistics to adapt
      keeps its parameters trainable.
    """
    batchnorm = batchnorm_types()
    model.train()
    for module in model.modules():
        is_frozen_bn = isinstance(module, batchnorm) and not any(p.requires_grad for p in module.parameters())
        if is_frozen_bn:
            module.eval()
    blocks = getattr(model, "blocks", [])  # TransferModel; a bare module has no block structure
    for block in blocks:
        if not any(p.requires_grad for p in block.parameters()):
            block.eval()


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def unfreeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(True)


def group(
    model: nn.Module, name: str, prefix: str | list[str], lr_scale: float, only: frozenset[str] | None = None
) -> ParamGroup:
    """The trainable parameters under one or more name prefixes (optionally only those named in `only`)."""
    prefixes = [prefix] if isinstance(prefix, str) else prefix
    named = [
        (n, p)
        for n, p in model.named_parameters()
        if p.requires_grad and any(n.startswith(pre + ".") for pre in prefixes) and (only is None or n in only)
    ]
    return ParamGroup(name, tuple(n for n, _ in named), tuple(p for _, p in named), lr_scale)


def block_groups(backbone: Backbone, start: int, lr_mult: float, decay: float | None) -> list[ParamGroup]:
    """Groups for pretrained blocks start..n-1 under discriminative learning rates.

    Without `decay`, one group at `lr_mult` x the head lr (ULMFiT/fast.ai practice: pretrained layers need
    smaller steps than a fresh head). With `decay`, layer-wise decay: block i gets decay**(n - i), so the
    block next to the head moves fastest and the stem slowest (Howard & Ruder 2018; Clark et al. 2020).
    """
    n = len(backbone.blocks)
    model = backbone.model
    if decay is None:
        prefixes = [f"blocks.{i}" for i in range(start, n)]
        return [g for g in [group(model, "backbone", prefixes, lr_mult)] if g.params]
    groups = [group(model, f"block.{i}", f"blocks.{i}", decay ** (n - i)) for i in range(start, n)]
    return [g for g in groups if g.params]


def pretrained_groups(backbone: Backbone, lr_mult: float, decay: float | None) -> list[ParamGroup]:
    """Every block unfrozen under `full`'s learning rates (`block_groups` from block 0); the head is left to
    `head_group`. What the recipes built on full fine-tuning (lpft, wiseft) train."""
    unfreeze(backbone.model)
    return block_groups(backbone, 0, lr_mult, decay)


def freeze_batchnorm(model: nn.Module) -> None:
    """Fix every BatchNorm layer: affine parameters frozen, so `set_train_mode` keeps its statistics fixed too."""
    batchnorm = batchnorm_types()
    for module in model.modules():
        if isinstance(module, batchnorm):
            freeze(module)


def block_group_names(groups: list[ParamGroup]) -> frozenset[str]:
    """Names of the groups `block_groups` made ('backbone', 'block.i'): the pretrained weights, not the new head
    nor what a task added after the strategy (relation markers)."""
    return frozenset(g.name for g in groups if g.name == "backbone" or g.name.startswith("block."))


def head_group(backbone: Backbone) -> ParamGroup:
    """The freshly initialised head trains at the full learning rate."""
    unfreeze(backbone.head)
    return group(backbone.model, "head", "head", 1.0)
