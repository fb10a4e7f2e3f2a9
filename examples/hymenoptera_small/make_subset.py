"""Make the small ants-vs-bees demo set in this folder from the shared hymenoptera data set.

The full set is 46 MB; this one keeps 60 train and 30 val images per class, shrunk to a 160 px short
side, so examples and smoke tests run in seconds and the repository stays small. The selection is a
fixed rule on sorted file names, so running the script again gives the same files (and, with the same
Pillow version, the same bytes). It also writes PROVENANCE.md.

Usage: python examples/hymenoptera_small/make_subset.py [SOURCE]
SOURCE defaults to ../shared/datasets/hymenoptera relative to the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "datasets" / "hymenoptera"

COUNTS = {"train": 60, "val": 30}
"""Images kept per class in each split."""
CLASSES = ("ants", "bees")
"""Class folders copied."""
SKIP = {"imageNotFound.gif"}
"""A placeholder picture ("image not found"), not an ant."""
SHORT_SIDE = 160
"""Every image is resized so its shorter side is this many pixels, keeping the aspect ratio."""
QUALITY = 90
"""JPEG quality of the saved copies."""

PROVENANCE_HEAD = """\
# hymenoptera_small: provenance

A small ants-vs-bees image classification set for examples and smoke tests, made by
`make_subset.py` (in this folder) from the project's shared copy of the hymenoptera data.

## Source

- Copied from: GitHub repository `zhangtao7750/syn` @ `f0503091488f67b6809a6da2eaa43c25f2f277fc`,
  folder `hymenoptera_data/` (kept in the project as `shared/datasets/hymenoptera`).
- Upstream: the PyTorch "Transfer Learning for Computer Vision" tutorial (`hymenoptera_data.zip`),
  itself a small subset of ImageNet.
- License: none stated. The images belong to their owners; ImageNet's research-use terms apply.
  Use for research and testing only.

## Selection

- Classes `ants` and `bees`; {train} images per class from `train/`, {val} per class from `val/`.
- `train/ants/imageNotFound.gif` (a placeholder, not an ant) is skipped; all other files are candidates.
- Rule: sort the candidate file names of a class folder (Python string order) giving n files, and
  to keep `count` of them take the files at positions floor(i * n / count) for i = 0 .. count-1,
  i.e. every (n / count)-th file, spread evenly over the sorted list.
- Each kept image is converted to RGB and resized with Lanczos filtering so its shorter side is
  {short} px (aspect ratio kept), then saved as baseline JPEG, quality {quality}, without metadata.
  Originals whose shorter side was under {short} px are enlarged; in this selection: {enlarged}.
- File names are the originals with spaces replaced by underscores and the extension set to `.jpg`
  (`ant photos.jpg` would become `ant_photos.jpg`, `formica.jpeg` `formica.jpg`); files renamed in
  this selection: {renamed}.

## Files

{total} images, {size} bytes of JPEG in all. The sha256 is of the original file in the source folder
(it matches the source's `SHA256SUMS`).

| file here | original | original sha256 |
|---|---|---|
"""


def select(files: list[str], count: int) -> list[str]:
    """`count` names spread evenly over the sorted list: positions floor(i * n / count)."""
    files = sorted(files)
    if len(files) < count:
        raise SystemExit(f"need {count} files, found {len(files)}")
    return [files[i * len(files) // count] for i in range(count)]


def out_name(name: str) -> str:
    return Path(name.replace(" ", "_")).stem + ".jpg"


def shrink(src: Path, dst: Path) -> bool:
    """Resize `src` to a SHORT_SIDE px short side into `dst`; True when that enlarged it."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        scale = SHORT_SIDE / min(im.size)
        size = (max(SHORT_SIDE, round(im.width * scale)), max(SHORT_SIDE, round(im.height * scale)))
        im.resize(size, Image.Resampling.LANCZOS).save(dst, "JPEG", quality=QUALITY)
        return scale > 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="hymenoptera folder")
    source = parser.parse_args().source
    rows = []
    enlarged: list[str] = []
    renamed: list[str] = []
    total_size = 0
    for split, count in COUNTS.items():
        shutil.rmtree(HERE / split, ignore_errors=True)
        for cls in CLASSES:
            folder = source / split / cls
            candidates = [p.name for p in folder.iterdir() if p.is_file() and p.name not in SKIP]
            (HERE / split / cls).mkdir(parents=True)
            for name in select(candidates, count):
                dst = HERE / split / cls / out_name(name)
                if dst.exists():
                    raise SystemExit(f"two files map to {dst}")
                if shrink(folder / name, dst):
                    enlarged.append(f"`{split}/{cls}/{name}`")
                if dst.name != name:
                    renamed.append(f"`{split}/{cls}/{name}`")
                total_size += dst.stat().st_size
                digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
                rows.append(f"| `{split}/{cls}/{dst.name}` | `{split}/{cls}/{name}` | `{digest}` |")
    head = PROVENANCE_HEAD.format(
        train=COUNTS["train"],
        val=COUNTS["val"],
        short=SHORT_SIDE,
        quality=QUALITY,
        total=len(rows),
        size=total_size,
        enlarged=", ".join(enlarged) or "none",
        renamed=", ".join(renamed) or "none",
    )
    (HERE / "PROVENANCE.md").write_text(head + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} images ({total_size} bytes) and PROVENANCE.md to {HERE}")


if __name__ == "__main__":
    main()
