"""torchvision MobileNetV2 in the contract's shape: stem, seven stages, neck.

torchvision lists MobileNetV2 as 19 flat `features`; we group the inverted-residual blocks into the
paper's stages (consecutive blocks with the same output width), so that "first K blocks" counts the same
units as timm's EfficientNet stages. torchvision is imported when a model is wrapped, so importing this
file costs torch only.

May import: errors, models.contract, models.inputs, models.families.cnn (and torch, torchvision).
"""

from __future__ import annotations

from torch import nn

from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.models.families.cnn import cnn_backbone
from tunelab.models.inputs import ImageInput

FAMILY = "torchvision"
"""This family's name in `Backbone.family` and `tunelab models`."""

IMAGENET = ImageInput(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=224, crop_pct=0.875)


def from_torchvision(net: nn.Module, name: str, input: ImageInput = IMAGENET, pretrained: bool = True) -> Backbone:
    """Wrap a torchvision MobileNetV2 (the only torchvision architecture we package weights for)."""
    from torchvision.models import MobileNetV2  # lazy: torchvision is heavy (see the module docstring)
    from torchvision.models.mobilenetv2 import InvertedResidual

    if not isinstance(net, MobileNetV2):
        raise TunelabError(f"torchvision architecture {type(net).__name__} is not supported; supported: MobileNetV2")
    features = list(net.features)
    stem, body, neck = features[0], features[1:-1], features[-1]
    stages: list[list[nn.Module]] = []
    for block in body:
        assert isinstance(block, InvertedResidual)
        if stages and stages[-1][-1].out_channels == block.out_channels:
            stages[-1].append(block)
        else:
            stages.append([block])
    blocks = [("stem", stem)]
    blocks += [(f"stage{i + 1}", nn.Sequential(*stage)) for i, stage in enumerate(stages)]
    blocks.append(("neck", neck))
    dropout, classifier = net.classifier
    return cnn_backbone(
        name=name,
        family=FAMILY,
        blocks=blocks,
        classifier=classifier,
        dropout=dropout.p,
        input=input,
        pretrained=pretrained,
        has_neck=True,
    )
