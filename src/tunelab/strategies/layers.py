"""Modules the strategies insert into a backbone: bottleneck adapters (ours) and LoRA (PEFT's), and their surgery.

Insertion replaces a submodule by a wrapper that runs the original and then the adapter; the original
module (and its pretrained parameters) is kept inside the wrapper untouched. Each insertion records the
parameters it added (found by identity: the ones the model did not have before), so nothing downstream has
to recognise inserted weights by their names.

Imports torch and PEFT: strategies import this module inside `apply`, never at the top of their file.
May import: models.contract, strategies.base.
"""

from __future__ import annotations

from torch import nn

from tunelab.models.contract import AdapterSite
from tunelab.strategies.base import Inserted


def adapter_width(width: int, reduction: int) -> int:
    """Bottleneck size for a feature width: width / reduction, but at least 8 units (never wider than the input).

    The floor keeps adapters on narrow CNN stages (16 or 24 channels) from collapsing to one unit.
    """
    return min(width, max(8, width // reduction))


class Bottleneck(nn.Module):
    """Houlsby adapter for (..., width) features: x + up(act(down(x))), up zero-initialised.

    Zero-initialising the up-projection makes the adapter the identity at insertion, so the adapted
    model starts exactly as the pretrained one (Houlsby et al., 2019, "Parameter-Efficient Transfer
    Learning for NLP").
    """

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.up(self.act(self.down(x)))


class ConvBottleneck(nn.Module):
    """Residual 1x1-conv adapter for NCHW feature maps (Rebuffi et al., 2017, residual adapters)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.down = nn.Conv2d(width, hidden, 1)
        self.act = nn.ReLU()
        self.up = nn.Conv2d(hidden, width, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.up(self.act(self.down(x)))


class Adapted(nn.Module):
    """Runs the original module, then an adapter on its output."""

    def __init__(self, base: nn.Module, adapter: nn.Module):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        return self.adapter(self.base(*args, **kwargs))


def added_params(model: nn.Module, before: set[int], paths: list[str]) -> list[tuple[str, ...]]:
    """For each module path, the names of its parameters that were not in the model before (`before`: their ids).

    Names are read once every insertion is done, because wrapping a module renames what sits under it.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    return [
        tuple(names[id(p)] for p in model.get_submodule(path).parameters() if id(p) not in before and id(p) in names)
        for path in paths
    ]


def insert_adapters(model: nn.Module, sites: list[AdapterSite], reduction: int) -> list[Inserted]:
    """Wrap every site's module with a zero-initialised bottleneck adapter; return what was added."""
    before = {id(p) for p in model.parameters()}
    added = []
    for site in sites:
        hidden = adapter_width(site.width, reduction)
        adapter = ConvBottleneck(site.width, hidden) if site.kind == "conv" else Bottleneck(site.width, hidden)
        model.set_submodule(site.path, Adapted(model.get_submodule(site.path), adapter))
        added.append((site.block, f"{site.path}.adapter", f"adapter {site.width}->{hidden}->{site.width}"))
    params = added_params(model, before, [path for _, path, _ in added])
    return [Inserted(block, path, text, names) for (block, path, text), names in zip(added, params)]


def insert_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float) -> list[Inserted]:
    """Add PEFT LoRA matrices to each target layer (B zero-initialised, so the model is unchanged)."""
    from peft import LoraConfig, inject_adapter_in_model

    before = {id(p) for p in model.parameters()}
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    inject_adapter_in_model(config, model)
    params = added_params(model, before, list(targets))
    return [Inserted(int(path.split(".")[1]), path, f"lora r={rank}", names) for path, names in zip(targets, params)]


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA update into its base weight and put the plain layer back; returns how many merged.

    After merging, inference costs exactly what the original model costs.
    """
    from peft.tuners.lora import LoraLayer

    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in layers:
        layer.merge()
        model.set_submodule(name, layer.get_base_layer())
    if layers and hasattr(model, "peft_config"):
        del model.peft_config  # PEFT's record of the injected LoRA; stale now, and a new LoRA would warn about it
    return len(layers)
