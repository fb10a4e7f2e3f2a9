"""Modules the strategies insert into a backbone: bottleneck adapters (ours) and LoRA (PEFT's), and their surgery.

Insertion replaces a submodule by a wrapper that runs the original and then the adapter; the original
module (and its pretrained parameters) is kept inside the wrapper untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tunelab.models.contract import AdapterSite


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


@dataclass(frozen=True)
class Inserted:
    """One module a strategy added to a block, for the plan and the checkpoint."""

    block: int
    """Index of the block it sits in."""
    path: str
    """Dotted name of the inserted module in the model."""
    description: str
    """Short human description, e.g. 'adapter 384->24->384'."""


def insert_adapters(model: nn.Module, sites: list[AdapterSite], reduction: int) -> list[Inserted]:
    """Wrap every site's module with a zero-initialised bottleneck adapter; return what was added."""
    inserted = []
    for site in sites:
        hidden = adapter_width(site.width, reduction)
        adapter = ConvBottleneck(site.width, hidden) if site.kind == "conv" else Bottleneck(site.width, hidden)
        model.set_submodule(site.path, Adapted(model.get_submodule(site.path), adapter))
        inserted.append(Inserted(site.block, f"{site.path}.adapter", f"adapter {site.width}->{hidden}->{site.width}"))
    return inserted


def insert_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float) -> list[Inserted]:
    """Add PEFT LoRA matrices to each target layer (B zero-initialised, so the model is unchanged)."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    inject_adapter_in_model(config, model)
    inserted = []
    for path in targets:
        block = int(path.split(".")[1])
        inserted.append(Inserted(block, path, f"lora r={rank}"))
    return inserted


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
