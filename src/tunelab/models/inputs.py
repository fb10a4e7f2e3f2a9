"""What a backbone expects as input: image normalisation and size, or a tokenizer and a length.

These travel with the backbone so that data loading never guesses: the same model always gets the
preprocessing it was trained with (timm's `pretrained_cfg`, torchvision's weights meta, the HF tokenizer).

May import: nothing of tunelab, and no torch (it stays cheap to import).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageInput:
    """Preprocessing an image backbone expects."""

    mean: tuple[float, float, float]
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, float, float]
    """Per-channel standard deviation divided by after subtracting the mean."""
    size: int
    """Side of the square crop fed to the network, in pixels."""
    crop_pct: float = 0.875
    """Evaluation resizes the short side to size / crop_pct, then centre-crops `size`."""
    interpolation: str = "bilinear"
    """Resampling filter name: 'bilinear' or 'bicubic'."""


@dataclass(frozen=True)
class TextInput:
    """Preprocessing a text backbone expects."""

    tokenizer: Any
    """A Hugging Face (fast) tokenizer; called as tokenizer(texts, truncation=True, max_length=...)."""
    max_length: int = 128
    """Default maximum number of tokens per example (longer inputs are truncated)."""
    max_positions: int | None = None
    """The most tokens the model can take at all (its position embeddings); None = no fixed limit."""


Input = ImageInput | TextInput
