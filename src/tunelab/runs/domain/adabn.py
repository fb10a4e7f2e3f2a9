"""AdaBN (Li et al., 2016): every BatchNorm layer's running statistics re-estimated on the target data.

After training, the model normalises target inputs with target statistics: a cumulative average over all
target examples, without gradients and without any other change. No extra training; models without
BatchNorm (the text models) are refused before a run starts (`checks.check_plan`). An AdaBN run's
model.safetensors holds every BatchNorm layer's statistics, frozen layers included (they are what AdaBN
changed).

May import: strategies (and torch, accelerate).
"""

from __future__ import annotations

import torch
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader

from tunelab.strategies.base import batchnorm_types


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device, start: int = 0) -> int:
    """AdaBN: replace every BatchNorm layer's running statistics by their cumulative average over `loader`.

    Only the BatchNorm layers run in train mode (dropout stays off), without gradients; momentum None makes
    the running statistics the plain average over the batches. A last batch of one example is skipped when
    others came before it (BatchNorm cannot normalise one example of a 1x1 feature map). Returns the number
    of layers adapted; every other tensor of the model is left as it was.
    """
    layers = [m for m in model.modules() if isinstance(m, batchnorm_types())]
    modes = [(m, m.training) for m in model.modules()]  # each module's own mode (a frozen block may be in eval)
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        seen = 0
        for inputs, labels in loader:
            if len(labels) == 1 and seen:
                break
            model(send_to_device(inputs, device), start=start)
            seen += len(labels)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, training in modes:
            m.train(training)
    return len(layers)


def batchnorm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every BatchNorm layer's buffers (running mean, variance, batches counted), by their names in `model`."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, batchnorm_types()):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                if buffer is not None:
                    state[f"{name}.{buffer_name}" if name else buffer_name] = buffer.detach()
    return state
