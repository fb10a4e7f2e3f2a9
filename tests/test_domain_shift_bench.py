"""benchmarks/domain_shift.py's hymenoptera-c data: what each of the three sets holds, that the unlabelled target
carries no label (no class folder, no class in a file name), and that the corruption is ImageNet-C's Gaussian
noise, repeatable from its seed. A tiny fake hymenoptera tree stands in for the real one (a few small photos)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tunelab.data.unlabelled import read_unlabelled

CLASSES = ("ants", "bees")


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "domain_shift.py"
    spec = importlib.util.spec_from_file_location("domain_shift", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["domain_shift"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def fake_hymenoptera(root: Path) -> Path:
    """train/ with 3 photos a class (one ending .jpeg) and a placeholder GIF among the ants, val/ with 2 a class.
    Photos are landscape or portrait, smooth gradients, so noise shows as a change a clean copy does not have."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                size = (48, 36) if i % 2 else (36, 48)
                base = np.linspace(60, 190, size[0] * size[1]).reshape(size[1], size[0])
                pixels = np.stack([base, base[::-1], np.full_like(base, 80 + 60 * c)], axis=2)
                pixels += rng.normal(0, 2, size=pixels.shape)
                suffix = ".jpeg" if i == 0 else ".jpg"
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{name}{i}{suffix}")
    Image.new("P", (20, 20)).save(root / "train" / "ants" / "imageNotFound.gif")
    return root


@pytest.fixture(scope="module")
def written(bench, tmp_path_factory):
    root = fake_hymenoptera(tmp_path_factory.mktemp("hymenoptera"))
    out = tmp_path_factory.mktemp("pair")
    return root, out, bench.write_hymenoptera_c(root, out, seed=0)


def test_the_three_sets_hold_train_train_noisy_and_val_noisy(bench, written):
    _, _, paths = written
    assert {name: bench.count_photos(path) for name, path in paths.items()} == {
        "source": 6,  # the GIF placeholder is left out
        "target-unlabelled": 6,
        "target-test": 4,
    }
    for name in ("source", "target-test"):
        assert sorted(p.name for p in paths[name].iterdir()) == list(CLASSES)
    for path in paths["source"].rglob("*.jpg"):
        assert Image.open(path).size == (bench.PHOTO_SIDE, bench.PHOTO_SIDE)


def test_the_unlabelled_target_carries_no_label(written):
    _, _, paths = written
    files = sorted(paths["target-unlabelled"].iterdir())
    assert all(f.is_file() for f in files)  # no class folders
    assert not any(c in f.name for f in files for c in CLASSES)
    target = read_unlabelled(paths["target-unlabelled"], "image")
    assert len(target) == 6 and target.notes == ()  # tunelab finds nothing to ignore: no labels were written


def test_the_source_is_clean_and_the_targets_are_noisy(bench, written):
    root, _, paths = written
    clean = bench.photo_view(root / "val" / "bees" / "bees1.jpg").astype(float)
    noisy = np.asarray(Image.open(paths["target-test"] / "bees" / "bees1.jpg")).astype(float)
    source = np.asarray(Image.open(paths["source"] / "bees" / "bees1.jpg")).astype(float)
    assert np.abs(source - bench.photo_view(root / "train" / "bees" / "bees1.jpg")).mean() < 3  # JPEG only
    # sigma 0.18 of 255 is 46 before JPEG smooths some of it away; the fake photos are mid-grey, little is clipped
    assert 25 < (noisy - clean).std() < 50


def test_the_noise_repeats_from_its_seed_and_changes_with_it(bench, written, tmp_path):
    root, _, paths = written
    again = bench.write_hymenoptera_c(root, tmp_path / "again", seed=0)
    other = bench.write_hymenoptera_c(root, tmp_path / "other", seed=1)
    for name in paths:
        for path in sorted(paths[name].rglob("*.jpg")):
            relative = path.relative_to(paths[name])
            assert path.read_bytes() == (again[name] / relative).read_bytes()
    first = paths["target-test"] / "ants" / "ants0.jpg"
    assert first.read_bytes() != (other["target-test"] / "ants" / "ants0.jpg").read_bytes()
    pixels = np.full((8, 8, 3), 128, dtype=np.uint8)
    rng = np.random.default_rng
    assert np.array_equal(bench.gaussian_noise(pixels, rng(3)), bench.gaussian_noise(pixels, rng(3)))
    assert not np.array_equal(bench.gaussian_noise(pixels, rng(3)), pixels)
