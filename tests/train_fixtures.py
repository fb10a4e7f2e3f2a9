"""Tiny learnable data sets written to disk, in the formats users bring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

POSITIVE = ["good movie", "great film", "fun story", "best acting", "great fun", "good plot", "fine film , really good"]
NEGATIVE = [
    "bad movie",
    "awful film",
    "boring story",
    "worst acting",
    "awful plot",
    "bad and boring",
    "really bad film",
]


def write_image_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Two colour classes ('red', 'blue') of noisy 40x40 images: learnable by any CNN in a few steps."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(["blue", "red"]):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, size=(40, 40, 3))
            pixels[..., 2 if c == 0 else 0] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}{i}.png")
    return root


def write_text_tsv(path: Path, repeats: int = 3) -> Path:
    rows = ["sentence\tlabel"] + [f"{s}\t1" for s in POSITIVE * repeats] + [f"{s}\t0" for s in NEGATIVE * repeats]
    path.write_text("\n".join(rows) + "\n")
    return path
