"""A model without bias terms, for the recipes' tests and bad-input rows (BitFit has nothing to train on it)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunelab.models.contract import Backbone
from tunelab.models.families import torchvision as torchvision_family
from tunelab.models.families.tiny import TINY_IMAGE_INPUT
from tunelab.models.registry import ZOO, ZooEntry

BIASLESS = "tiny-cnn-without-biases"
"""Name under which `register_biasless_cnn` makes the model loadable by --model."""


def biasless_cnn(pretrained: bool = False) -> Backbone:
    """The tiny MobileNetV2 with BatchNorm layers that have no affine shift: no block holds a bias."""
    from torchvision.models import MobileNetV2

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = MobileNetV2(num_classes=10, inverted_residual_setting=[[1, 8, 1, 1], [6, 16, 2, 2]])
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):  # normalisation without the learned scale and shift
            module.affine, module.weight, module.bias = False, None, None
    return torchvision_family.from_torchvision(net, BIASLESS, TINY_IMAGE_INPUT, pretrained=False)


def register_biasless_cnn(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the model loadable by name until the test's monkeypatch is undone; returns its name."""
    entry = ZooEntry(BIASLESS, torchvision_family.FAMILY, "none: random weights, for tests", None, biasless_cnn)
    monkeypatch.setitem(ZOO, BIASLESS, entry)
    return BIASLESS
