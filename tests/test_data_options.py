"""Everyday data options through the CLI: eval on a split folder, predict on a folder, --image-size,
--augmentation presets and --class-names, each checked by its effect (sizes, pixels, names, examples scored).

Bad inputs for these options (one line, exit 2) are rows of the table in test_bad_inputs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tunelab.runs.epoch as epoch_module
from train_fixtures import write_image_folder
from tunelab.cli import main
from tunelab.data import Examples, image_transform
from tunelab.data.split_folders import evaluation_folder
from tunelab.models.inputs import ImageInput
from tunelab.runs.as_model import from_run
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.job import load_job
from tunelab.runs.loaders import example_dataset
from tunelab.runs.trained import load_run
from tunelab.settings import TrainConfig, from_yaml_file


def train_argv(data: Path, out: Path, *extra: str, model: str = "tiny-cnn", strategy: str = "none") -> list[str]:
    return ["train", "--model", model, "--strategy", strategy, "--data", str(data), "--out", str(out), *extra]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory) -> Path:
    """hym/train (8 images a class) and hym/val (3 a class), the layout `train --data hym` reads."""
    root = tmp_path_factory.mktemp("split") / "hym"
    write_image_folder(root / "train", per_class=8)
    write_image_folder(root / "val", per_class=3, seed=1)
    return root


@pytest.fixture(scope="module")
def split_run(split_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(train_argv(split_folder, out, "--epochs", "1")) == 0
    return out


# ---------------------------------------------------------------- eval on the split folder the run trained from


def test_eval_on_a_split_folder_scores_its_val_subfolder(split_folder, split_run, capsys):
    code, out, err = run_cli(["eval", "--run", str(split_run), "--data", str(split_folder), "--json"], capsys)
    assert code == 0, err
    assert f"evaluating on {split_folder / 'val'} (the validation split" in err
    report = json.loads(out)
    assert report["n"] == 6 and [c["support"] for c in report["per_class"]] == [3, 3]
    code, direct, _ = run_cli(["eval", "--run", str(split_run), "--data", str(split_folder / "val"), "--json"], capsys)
    assert code == 0 and json.loads(direct) == report  # the same as naming hym/val


def test_eval_prefers_the_test_subfolder_and_refuses_an_unclear_one(split_folder, split_run, tmp_path, capsys):
    hym = tmp_path / "hym"
    write_image_folder(hym / "train", per_class=2)
    write_image_folder(hym / "val", per_class=3)
    write_image_folder(hym / "test", per_class=2, seed=2)
    code, out, err = run_cli(["eval", "--run", str(split_run), "--data", str(hym), "--json"], capsys)
    assert code == 0 and json.loads(out)["n"] == 4
    assert f"evaluating on {hym / 'test'} (the held-out test split" in err

    both = tmp_path / "both"
    write_image_folder(both / "val", per_class=1)
    write_image_folder(both / "valid", per_class=1)
    code, _, err = run_cli(["eval", "--run", str(split_run), "--data", str(both)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "a split folder with val/ and valid/: it is not clear which to score" in err

    only_train = tmp_path / "only"
    write_image_folder(only_train / "train", per_class=1)
    code, _, err = run_cli(["eval", "--run", str(split_run), "--data", str(only_train)], capsys)
    assert code == 2 and "a split folder with only train/, no val/" in err


def test_a_folder_of_class_folders_named_like_splits_is_read_as_it_is(tmp_path):
    classes = ("test", "train")  # a model whose classes happen to be named like splits
    write_image_folder(tmp_path / "d" / "test", per_class=1)
    (tmp_path / "d" / "train").mkdir()
    assert evaluation_folder(tmp_path / "d", classes) is None
    assert evaluation_folder(tmp_path / "d", ("blue", "red")) == tmp_path / "d" / "test"
    assert evaluation_folder(tmp_path / "d" / "test", ("blue", "red")) is None  # a plain class tree


def test_train_reads_a_valid_subfolder_as_validation(tmp_path, capsys):
    write_image_folder(tmp_path / "d" / "train", per_class=4)
    write_image_folder(tmp_path / "d" / "valid", per_class=2, seed=1)
    code, _, err = run_cli(train_argv(tmp_path / "d", tmp_path / "run", "--epochs", "1"), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["val_examples"] == 4


# ---------------------------------------------------------------- predict on a folder


def test_predict_takes_a_folder_of_images_and_still_files(split_folder, split_run, tmp_path, capsys):
    folder = tmp_path / "new"
    write_image_folder(folder / "nested", per_class=2)  # nested/blue/*.png, nested/red/*.png
    (folder / "readme.txt").write_text("not an image\n")
    (folder / "nested" / "labels.csv").write_text("a,b\n")
    (folder / ".hidden.png").write_bytes(b"")  # hidden files are skipped silently, as in a class folder
    code, out, err = run_cli(["predict", "--run", str(split_run), str(folder)], capsys)
    assert code == 0, err
    files = [line.split("\t")[0] for line in out.splitlines()]
    expected = sorted(str(p) for p in folder.rglob("*.png") if not p.name.startswith("."))
    assert files == expected and len(files) == 4
    assert f"note: {folder}: 4 images, skipped 2 files that are not an image" in err
    assert all(set(line.split("\t")[1].split()[::2]) == {"blue", "red"} for line in out.splitlines())

    single = expected[0]
    code, out, _ = run_cli(["predict", "--run", str(split_run), single, str(folder), "--json"], capsys)
    assert code == 0
    assert [p["input"] for p in json.loads(out)] == [single, *expected]  # each input in place, in order

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.md").write_text("x")
    code, out, err = run_cli(["predict", "--run", str(split_run), str(tmp_path / "empty")], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{tmp_path / 'empty'}: no images in this folder (1 other file)" in err


# ---------------------------------------------------------------- --image-size


def _image(side: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(side, side + 8, 3)).astype(np.uint8))


def test_image_size_sizes_every_transform_and_travels_with_the_run(split_folder, tmp_path, capsys):
    out = tmp_path / "sized"
    argv = train_argv(split_folder, out, "--epochs", "1", "--image-size", "48", "--augment", strategy="full")
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "image_size: 48" in (out / "config.yaml").read_text()

    job = load_job(from_yaml_file(TrainConfig, out / "config.yaml"))
    assert job.plan.backbone.input.size == 48
    for train in (True, False):
        x, _ = example_dataset(job.splits.train, job.plan.backbone, train=train, augment=train)[0]
        assert x.shape == (3, 48, 48)

    run = load_run(out)  # what eval, predict and export rebuild
    assert run.plan.backbone.input.size == 48
    x, _ = example_dataset(job.splits.val, run.plan.backbone, train=False, augment=False)[0]
    assert x.shape == (3, 48, 48)
    assert from_run(out).input.size == 48  # a run used as a model keeps its size

    code, report, _ = run_cli(["eval", "--run", str(out), "--data", str(split_folder / "val"), "--json"], capsys)
    assert code == 0 and json.loads(report)["n"] == 6
    code, lines, _ = run_cli(["predict", "--run", str(out), str(split_folder / "val" / "red")], capsys)
    assert code == 0 and len(lines.splitlines()) == 3

    onnx = pytest.importorskip("onnx", reason="ONNX export needs the [export] extra")
    code, _, err = run_cli(["export", "--run", str(out), "--out", str(tmp_path / "sized.onnx")], capsys)
    assert code == 0, err
    graph = onnx.load(str(tmp_path / "sized.onnx"))
    assert json.loads({p.key: p.value for p in graph.metadata_props}["preprocessing"])["size"] == 48
    shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert shape[1:] == [3, 48, 48]  # traced at the run's size


def test_without_image_size_a_run_uses_its_models_own(split_run):
    assert load_run(split_run).plan.backbone.input.size == 32  # tiny-cnn's input size


# ---------------------------------------------------------------- --augmentation presets


SPEC = ImageInput(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=32, crop_pct=1.0)


def _augmented(augment, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    transform = image_transform(SPEC, train=True, augment=augment)
    return torch.stack([transform(_image(seed=i)) for i in range(4)])


@pytest.mark.parametrize("preset", ["randaugment", "trivialaugment"])
def test_a_preset_changes_pixels_deterministically_per_seed(preset):
    assert torch.equal(_augmented(preset, 3), _augmented(preset, 3))  # the same seed: the same pixels
    assert not torch.equal(_augmented(preset, 3), _augmented(preset, 4))
    assert not torch.equal(_augmented(preset, 3), _augmented("standard", 3))  # the policy changes pixels
    assert torch.equal(_augmented("standard", 3), _augmented(True, 3))  # True is the standard crop and flip
    assert _augmented(preset, 3).shape == (4, 3, 32, 32)


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / "model.safetensors")[0]


def test_a_preset_trains_the_same_run_again_and_after_a_resume(split_folder, tmp_path, capsys, monkeypatch):
    def argv(out: str, preset: str) -> list[str]:
        extra = ("--epochs", "2", "--batch-size", "4", "--augment", "--augmentation", preset, "--seed", "3")
        return train_argv(split_folder, tmp_path / out, *extra, strategy="full")

    assert run_cli(argv("a", "randaugment"), capsys)[0] == 0
    assert "augmentation: randaugment" in (tmp_path / "a" / "config.yaml").read_text()
    assert run_cli(argv("standard", "standard"), capsys)[0] == 0

    real_epoch = epoch_module._train_epoch

    def interrupted(*args, **kwargs):
        if args[-2] == 1:  # the epoch index: stop while the second epoch runs
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
    assert run_cli(argv("b", "randaugment"), capsys)[0] == 2
    monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
    assert not (tmp_path / "b" / "summary.json").exists()
    code, _, err = run_cli([*argv("b", "randaugment"), "--resume"], capsys)
    assert code == 0 and "resuming after epoch 1" in err

    a, b, standard = _tensors(tmp_path / "a"), _tensors(tmp_path / "b"), _tensors(tmp_path / "standard")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical after the resume
    assert any(not torch.equal(a[k], standard[k]) for k in a)  # and the preset did change what was learned


def test_a_preset_that_cannot_apply_is_said_in_one_warning(split_folder, text, tmp_path, capsys):
    preset = ("--epochs", "1", "--augmentation", "randaugment")
    cases = [
        (train_argv(split_folder, tmp_path / "cached", *preset), "cached"),
        (
            train_argv(split_folder, tmp_path / "off", *preset, "--no-augment", strategy="full"),
            "the augment setting is off",
        ),
        (
            train_argv(text, tmp_path / "text", "--epochs", "1", "--augmentation", "trivialaugment", model="tiny-bert"),
            "a text model's inputs are not augmented",
        ),
    ]
    for argv, why in cases:
        code, _, err = run_cli(argv, capsys)
        assert code == 0, err
        warnings = [line for line in err.splitlines() if "augmentation" in line and "warning" in line]
        assert len(warnings) == 1 and "is not applied: image augmentation is off" in warnings[0] and why in warnings[0]
    code, _, err = run_cli(train_argv(split_folder, tmp_path / "on", "--epochs", "1", "--augment"), capsys)
    assert code == 0 and "warning: augmentation" not in err  # standard, and on: nothing to say


# ---------------------------------------------------------------- --class-names


def test_class_names_name_integer_labels_everywhere(text, tmp_path, capsys):
    test_file = tmp_path / "test.tsv"
    test_file.write_text("sentence\tlabel\ngood film\t1\ngreat fun\t1\n")  # a subset of the labels
    out = tmp_path / "named"
    extra = ("--epochs", "1", "--class-names", "negative,positive", "--test-data", str(test_file))
    code, _, err = run_cli(train_argv(text, out, *extra, model="tiny-bert"), capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == ["negative", "positive"] and summary["test_examples"] == 2
    _, meta = load_tensors(out / "model.safetensors")
    assert json.loads(meta["classes"]) == ["negative", "positive"]

    code, lines, _ = run_cli(["predict", "--run", str(out), "good movie", "bad film"], capsys)
    assert code == 0
    assert [set(line.split("\t")[1].split()[::2]) for line in lines.splitlines()] == [{"negative", "positive"}] * 2

    code, report, _ = run_cli(["eval", "--run", str(out), "--data", str(text), "--json"], capsys)
    report = json.loads(report)
    assert code == 0 and report["classes"] == ["negative", "positive"]
    assert [c["support"] for c in report["per_class"]] == [21, 21]  # label 0 is negative: 21 of each in the file


def test_class_names_follow_the_integer_order_not_the_sorted_one(tmp_path):
    from tunelab.data.class_names import name_classes

    read = Examples(["a", "b", "c"], [0, 1, 2], ("0", "1", "10"), "t.tsv")  # ... as the reader numbers them
    names = tuple(f"n{i}" for i in range(11))
    with pytest.raises(Exception, match="no example has label 2"):
        name_classes(read, names, training=True)
    named = name_classes(read, names, training=False)
    assert named.classes == names and named.labels == [0, 1, 10]


def test_test_data_in_idx_files_scores_like_a_class_folder(tmp_path):
    """MNIST-style idx files work as --test-data too (the t10k pair, else the train pair of that folder)."""
    import numpy as np

    from tunelab.data.idx import write_idx
    from tunelab.fileio import load_json

    rng = np.random.default_rng(0)
    for name, count in (("train", 24), ("test", 9)):
        (tmp_path / name).mkdir()
        labels = [i % 3 for i in range(count)]
        write_idx(tmp_path / name, "train", rng.integers(0, 255, (count, 8, 8), dtype=np.uint8), labels)
    argv = ["train", "--model", "tiny-cnn", "--data", str(tmp_path / "train"), "--test-data", str(tmp_path / "test")]
    assert main([*argv, "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "run")]) == 0
    summary = load_json(tmp_path / "run" / "summary.json")
    assert (summary["scored_on"], summary["test_examples"], summary["classes"]) == ("test", 9, ["0", "1", "2"])
