"""Image preprocessing built from the backbone's own `ImageInput`, never from guessed constants.

Resizing and cropping run on PIL images, as timm and torchvision do when they publish accuracies, so
a pretrained model sees the same pixels it was evaluated with; only the final step makes a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from tunelab.errors import TunelabError
from tunelab.models.inputs import ImageInput


class ToRGB:
    """Turn a PIL image or an HxW / HxWx3 uint8 array (idx data) into an RGB PIL image.

    Grayscale becomes three equal channels, because pretrained backbones all take three.
    """

    def __call__(self, image: Any) -> Image.Image:
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise TypeError(f"expected an HxW or HxWxC uint8 array, got {image.dtype} {image.shape}")
            image = Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image or a uint8 numpy array, got {type(image).__name__}")
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


def _interpolation(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name.lower())
    except ValueError:
        valid = ", ".join(m.value for m in InterpolationMode)
        raise TunelabError(f"unknown interpolation '{name}'; use one of: {valid}") from None


def _to_tensor(spec: ImageInput) -> list[Callable[[Any], Any]]:
    return [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
        v2.ToPureTensor(),
    ]


def eval_size(spec: ImageInput) -> int:
    """Short side before the centre crop: size / crop_pct, rounded down (timm's rule)."""
    return math.floor(spec.size / spec.crop_pct)


AUGMENTATIONS = ("standard", "randaugment", "trivialaugment")
"""Training augmentations by name (the augmentation setting): standard is a random resized crop and a
horizontal flip; randaugment and trivialaugment add torchvision's RandAugment or TrivialAugmentWide after them."""


def _policy(name: str, spec: ImageInput, interpolation: InterpolationMode) -> list[Callable[[Any], Any]]:
    """The colour and geometry policy a preset adds after the crop and flip (none for standard).

    torchvision's RandAugment / TrivialAugmentWide rather than timm's `rand_augment_transform`: they sit in
    the same `v2` pipeline as the crop and flip and draw from the same torch random generator, so the
    per-(seed, epoch) seeding the loop already does makes them repeat exactly on --resume (timm's draws
    from Python's `random`, a second stream), and they take no policy string to parse. RandAugment runs its
    defaults (2 ops at magnitude 9 of 31, the common rand-m9 setting); TrivialAugmentWide has no knobs.
    Areas a rotation or shear uncovers are filled with the model's mean pixel, as timm fills them, so they
    normalise to zero rather than to black.
    """
    if name == "standard":
        return []
    fill = [round(255 * m) for m in spec.mean]
    if name == "randaugment":
        return [v2.RandAugment(interpolation=interpolation, fill=fill)]
    if name == "trivialaugment":
        return [v2.TrivialAugmentWide(interpolation=interpolation, fill=fill)]
    raise TunelabError(f"unknown augmentation '{name}'; use one of: {', '.join(AUGMENTATIONS)}")


def image_transform(spec: ImageInput, train: bool, augment: bool | str = True) -> v2.Compose:
    """The transform from an image (PIL or uint8 array) to a normalised float tensor 3 x size x size.

    Evaluation resizes the short side to size / crop_pct and centre-crops `size`. Training with
    `augment` uses a random resized crop and horizontal flip instead, plus the policy of the preset when
    `augment` names one of AUGMENTATIONS (True: standard); training without it uses the evaluation
    transform, which is what linear probes on frozen features want. All randomness comes from torch's
    global generator, which the loop seeds per (seed, epoch).
    """
    if not 0.0 < spec.crop_pct <= 1.0:
        raise TunelabError(f"crop_pct must be in (0, 1], got {spec.crop_pct!r}")
    interpolation = _interpolation(spec.interpolation)
    if train and augment:
        geometry: list[Callable[[Any], Any]] = [
            v2.RandomResizedCrop(spec.size, interpolation=interpolation),
            v2.RandomHorizontalFlip(),
            *_policy("standard" if augment is True else str(augment), spec, interpolation),
        ]
    else:
        geometry = [
            v2.Resize(eval_size(spec), interpolation=interpolation),
            v2.CenterCrop(spec.size),
        ]
    return v2.Compose([ToRGB(), *geometry, *_to_tensor(spec)])
