"""Image folders, idx files, safe decoding, transforms and the image dataset, on tiny generated data."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tunelab.data.datasets import ImageDataset
from tunelab.data.idx import read_idx
from tunelab.data.images import load_image, load_images, read_image_folder
from tunelab.data.transforms import image_transform
from tunelab.errors import DataError
from tunelab.models.inputs import ImageInput

SPEC = ImageInput(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=16, crop_pct=0.8)


def _rgb(size=(24, 20), color=(200, 30, 60)) -> Image.Image:
    return Image.new("RGB", size, color)


def _palette_gif(path: Path) -> None:
    im = Image.new("P", (12, 10), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    im.save(path, transparency=0)


def make_tree(root: Path, classes=("ants", "bees"), per_class=3) -> Path:
    """A class-per-folder tree holding every supported format and a few files that must be skipped."""
    writers = [
        lambda p: _rgb().save(p.with_suffix(".jpg")),
        lambda p: Image.new("L", (20, 20), 128).save(p.with_suffix(".PNG")),
        lambda p: Image.new("RGBA", (20, 20), (0, 255, 0, 128)).save(p.with_suffix(".png")),
        lambda p: _palette_gif(p.with_suffix(".gif")),
        lambda p: _rgb().save(p.with_suffix(".bmp")),
        lambda p: _rgb().save(p.with_suffix(".webp")),
        lambda p: _rgb().save(p.with_suffix(".tiff")),
        lambda p: _rgb().save(p.with_suffix(".jpeg")),
    ]
    for c, name in enumerate(classes):
        folder = root / name
        (folder / "nested").mkdir(parents=True)
        for i in range(per_class):
            target = folder / "nested" if i == 0 else folder
            writers[(c * per_class + i) % len(writers)](target / f"{name}{i}")
        _rgb().save(folder / ".hidden.jpg")
        (folder / "notes.txt").write_text("not an image")
    return root


def test_read_image_folder_lists_classes_and_files(tmp_path):
    root = make_tree(tmp_path / "data", classes=("bees", "ants"), per_class=4)
    examples = read_image_folder(root)
    assert examples.classes == ("ants", "bees")
    assert examples.labels == [0] * 4 + [1] * 4
    assert examples.source == str(root)
    names = [p.name for p in examples.inputs]
    assert not any(n.startswith(".") or n.endswith(".txt") for n in names)
    assert any(p.parent.name == "nested" for p in examples.inputs)
    assert {p.suffix for p in examples.inputs} >= {".jpg", ".PNG", ".png", ".gif", ".bmp", ".webp", ".tiff"}


def test_read_image_folder_survives_symlink_loops(tmp_path):
    root = make_tree(tmp_path / "data", per_class=2)
    os.symlink(root / "ants", root / "ants" / "nested" / "loop")
    os.symlink(root, root / "ants" / "nested" / "to_root")
    os.symlink(root / "bees", root / "ants" / "to_bees")
    examples = read_image_folder(root)
    assert len(examples) == 4 and examples.labels == [0, 0, 1, 1]
    assert len({p.resolve() for p in examples.inputs}) == 4


def test_read_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found") as err:
        read_image_folder(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(err.value)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        read_image_folder(tmp_path / "file.jpg")
    (tmp_path / "flat").mkdir()
    _rgb().save(tmp_path / "flat" / "a.jpg")
    with pytest.raises(DataError, match="no class folders"):
        read_image_folder(tmp_path / "flat")
    root = make_tree(tmp_path / "one", classes=("ants",))
    with pytest.raises(DataError, match="found 1 class folder \\('ants'\\)"):
        read_image_folder(root)
    root = make_tree(tmp_path / "empty")
    (root / "wasps").mkdir()
    (root / "wasps" / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="class folder 'wasps' holds no images") as err:
        read_image_folder(root)
    assert str(root / "wasps") in str(err.value)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "CMYK", "1", "I;16"])
def test_load_image_returns_rgb_for_every_mode(tmp_path, mode):
    path = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    Image.new(mode, (9, 7)).save(path)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (9, 7)


def test_load_image_palette_gif_and_16_bit(tmp_path):
    _palette_gif(tmp_path / "p.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im = load_image(tmp_path / "p.gif")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 0, 0)
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png").getpixel((1, 1)) == (255, 255, 255)


def test_load_image_reduces_huge_images(tmp_path):
    _rgb((800, 600)).save(tmp_path / "big.jpg")
    Image.new("L", (800, 600)).save(tmp_path / "big.png")
    for name in ("big.jpg", "big.png"):
        im = load_image(tmp_path / name, max_pixels=100 * 75)
        assert im.mode == "RGB" and im.width <= 100 and im.height <= 75 and im.width >= 98


def test_load_image_ignores_decompression_bomb_limit(tmp_path, monkeypatch):
    _rgb((200, 100)).save(tmp_path / "bomb.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 20000 px is > 2x the limit: Pillow would raise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im = load_image(tmp_path / "bomb.jpg", max_pixels=5000)
    assert im.size[0] <= 100 and Image.MAX_IMAGE_PIXELS == 1000


def test_load_image_applies_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    _rgb((20, 10)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (10, 20)


def test_load_image_bad_files_raise_data_error(tmp_path):
    _rgb((64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("truncated.jpg", "text.jpg", "empty.png", "missing.jpg"):
        with pytest.raises(DataError, match="cannot read image") as err:
            load_image(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: ")


def test_load_images_train_val_folders(tmp_path):
    make_tree(tmp_path / "train", classes=("ants", "bees", "wasps"), per_class=2)
    make_tree(tmp_path / "validation", classes=("bees",), per_class=2)
    splits = load_images(tmp_path)
    assert splits.train.classes == splits.val.classes == ("ants", "bees", "wasps")
    assert splits.val.labels == [1, 1]
    make_tree(tmp_path / "val", classes=("bees", "hornets"), per_class=1)
    with pytest.raises(DataError, match="class 'hornets' is not a training class") as err:
        load_images(tmp_path)
    assert str(tmp_path / "val" / "hornets") in str(err.value)


def test_load_images_single_folder_is_split_stratified(tmp_path):
    make_tree(tmp_path / "d", classes=("a", "b"), per_class=6)
    splits = load_images(tmp_path / "d", val_fraction=0.34, seed=3)
    assert sorted(splits.val.labels) == [0, 0, 1, 1]
    assert set(splits.train.inputs).isdisjoint(splits.val.inputs)
    assert len(splits.train) + len(splits.val) == 12
    assert load_images(tmp_path / "d", val_fraction=0.34, seed=3) == splits
    make_tree(tmp_path / "small", classes=("a", "b"), per_class=2)
    for p in list((tmp_path / "small" / "b").rglob("*.*"))[:1]:
        p.unlink()
    with pytest.raises(DataError, match="class 'b' has 1 example"):
        load_images(tmp_path / "small")


def _write_idx(path: Path, array: np.ndarray, magic: int, compress: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_idx(folder: Path, n_train=6, n_test=4, compress=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if compress else ""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 5, 4)), 0x803, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 3, 0x801, compress)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx(tmp_path, compress):
    folder = make_idx(tmp_path, compress=compress)
    ext = ".gz" if compress else ""
    ex = read_idx(folder / f"train-images-idx3-ubyte{ext}", folder / f"train-labels-idx1-ubyte{ext}")
    assert len(ex) == 6 and ex.labels == [0, 1, 2, 0, 1, 2] and ex.classes == ("0", "1", "2")
    assert ex.inputs[0].shape == (5, 4) and ex.inputs[0].dtype == np.uint8
    named = read_idx(
        folder / f"train-images-idx3-ubyte{ext}",
        folder / f"train-labels-idx1-ubyte{ext}",
        classes=("top", "trouser", "dress"),
    )
    assert named.classes == ("top", "trouser", "dress")
    with pytest.raises(DataError, match="label 2 \\(item 2\\) has no class name"):
        read_idx(
            folder / f"train-images-idx3-ubyte{ext}",
            folder / f"train-labels-idx1-ubyte{ext}",
            classes=("top", "trouser"),
        )


def test_read_idx_errors(tmp_path):
    folder = make_idx(tmp_path, compress=False)
    images, labels = folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte"
    with pytest.raises(DataError, match="magic number 00000801, expected 00000803") as err:
        read_idx(labels, images)
    assert str(labels) in str(err.value)
    with pytest.raises(DataError, match="6 images but t10k-labels-idx1-ubyte has 4 labels"):
        read_idx(images, folder / "t10k-labels-idx1-ubyte")
    images.write_bytes(images.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(images, labels)
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(tmp_path / "bad.gz", labels)


def test_load_images_idx_folder(tmp_path):
    splits = load_images(make_idx(tmp_path / "fashion"))
    assert len(splits.train) == 6 and len(splits.val) == 4
    assert splits.val.classes == splits.train.classes
    (tmp_path / "fashion" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        load_images(tmp_path / "fashion")


def test_eval_transform_resizes_crops_and_normalises():
    transform = image_transform(SPEC, train=False)
    out = transform(_rgb((40, 20), (255, 0, 128)))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32 and type(out) is torch.Tensor
    expected = (torch.tensor([255, 0, 128]) / 255.0 - 0.5) / 0.25
    assert torch.allclose(out[:, 8, 8], expected, atol=1e-6)
    # train without augmentation is exactly the evaluation transform
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    assert torch.equal(image_transform(SPEC, train=True, augment=False)(image), transform(image))


def test_train_transform_and_grayscale_arrays():
    transform = image_transform(SPEC, train=True)
    assert transform(_rgb((50, 30))).shape == (3, 16, 16)
    gray = np.full((28, 28), 51, dtype=np.uint8)
    for t in (transform, image_transform(SPEC, train=False)):
        out = t(gray)
        assert out.shape == (3, 16, 16)
        assert torch.allclose(out, torch.full_like(out, (0.2 - 0.5) / 0.25), atol=1e-6)


def test_image_dataset_over_files_and_idx(tmp_path):
    transform = image_transform(SPEC, train=False)
    files = ImageDataset(read_image_folder(make_tree(tmp_path / "d", per_class=4)), transform)
    items = [files[i] for i in range(len(files))]
    assert all(x.shape == (3, 16, 16) for x, _ in items)
    assert [y for _, y in items] == [0] * 4 + [1] * 4 and files.classes == ("ants", "bees")
    arrays = ImageDataset(load_images(make_idx(tmp_path / "idx")).train, transform)
    x, y = arrays[1]
    assert x.shape == (3, 16, 16) and y == 1
