"""timm CNNs in the contract's shape: EfficientNet-style (stem, stages, neck) and ResNet-style.

timm's own `pretrained_cfg` supplies the preprocessing (mean, std, input size, crop, interpolation).
timm itself is imported when a model is wrapped (it has been, to build the model), so importing this
file costs torch, not timm: a text or torchvision run never loads it.

May import: errors, models.contract, models.inputs, models.families.cnn (and torch, timm).
"""

from __future__ import annotations

from torch import nn

from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.models.families.cnn import cnn_backbone
from tunelab.models.inputs import ImageInput

FAMILY = "timm"
"""This family's name in `Backbone.family` and `tunelab models`."""


def timm_input(net: nn.Module) -> ImageInput:
    """The preprocessing timm recorded for this model's pretrained weights."""
    cfg = net.pretrained_cfg
    return ImageInput(
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=str(cfg.get("interpolation", "bilinear")),
    )


def from_timm(net: nn.Module, name: str, pretrained: bool = True) -> Backbone:
    """Wrap a timm EfficientNet / MobileNetV2 / EfficientNet-Lite (class EfficientNet) or a ResNet."""
    from timm.models.efficientnet import EfficientNet  # lazy: timm is heavy (see the module docstring)
    from timm.models.resnet import ResNet

    if isinstance(net, EfficientNet):
        blocks = [("stem", nn.Sequential(net.conv_stem, net.bn1))]
        blocks += [(f"stage{i + 1}", stage) for i, stage in enumerate(net.blocks)]
        blocks.append(("neck", nn.Sequential(net.conv_head, net.bn2)))
        classifier = net.classifier
        has_neck = True
    elif isinstance(net, ResNet):
        blocks = [("stem", nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool))]
        blocks += [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
        classifier = net.fc
        has_neck = False
    else:
        raise TunelabError(
            f"timm architecture {type(net).__name__} is not supported yet; supported: EfficientNet family "
            "(efficientnet_*, tf_efficientnet_lite*, mobilenetv2_*), ResNet family (resnet*, resnext*)"
        )
    if not isinstance(classifier, nn.Linear):
        raise TunelabError(f"{name}: expected a Linear classifier, found {type(classifier).__name__}")
    return cnn_backbone(
        name=name,
        family=FAMILY,
        blocks=blocks,
        classifier=classifier,
        dropout=float(net.drop_rate),
        input=timm_input(net),
        pretrained=pretrained,
        has_neck=has_neck,
    )
