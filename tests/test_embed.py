"""tunelab embed: pooled features of every example with labels and ids, from zoo models and run directories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.data import load_image
from tunelab.data.idx import write_idx
from tunelab.data.transforms import image_transform
from tunelab.embedding import embed
from tunelab.models.zoo import load_backbone
from tunelab.runs.loop import train
from tunelab.settings import TrainConfig


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=6)


def test_image_folder_features_labels_and_ids(images):
    result = embed("tiny-cnn", images, progress=False)
    assert result.features.shape == (12, 1280) and result.features.dtype == np.float32
    assert result.classes == ("blue", "red") and result.labels.tolist() == [0] * 6 + [1] * 6
    assert result.ids[0] == "blue/blue0.png" and result.ids[-1] == "red/red5.png"
    assert (result.block, result.block_name) == (4, "neck")


def test_features_are_the_pooled_output_of_the_requested_block(images):
    backbone = load_backbone("tiny-cnn")
    result = embed(backbone, images, block=1, progress=False)
    assert result.features.shape == (12, 8) and result.block_name == "stage1"
    x = image_transform(backbone.input, train=False)(load_image(images / "red" / "red2.png")).unsqueeze(0)
    backbone.model.eval()
    with torch.no_grad():
        expected = backbone.model(x, stop=2).mean(dim=(2, 3))[0].numpy()
    row = list(result.ids).index("red/red2.png")
    np.testing.assert_allclose(result.features[row], expected, atol=1e-5)


def test_idx_files_give_both_splits_with_their_positions(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path, "train", rng.integers(0, 255, (10, 28, 28), dtype=np.uint8), [0, 1, 2] * 3 + [0])
    write_idx(tmp_path, "t10k", rng.integers(0, 255, (4, 28, 28), dtype=np.uint8), [2, 1, 0, 2])
    result = embed("tiny-cnn", tmp_path, batch_size=3, progress=False)
    assert result.features.shape == (14, 1280)
    assert result.ids.tolist() == [f"train/{i}" for i in range(10)] + [f"t10k/{i}" for i in range(4)]
    assert result.labels.tolist()[-4:] == [2, 1, 0, 2] and result.classes == ("0", "1", "2")


def test_text_table_rows(tmp_path):
    data = write_text_tsv(tmp_path / "reviews.tsv", repeats=1)
    result = embed("tiny-bert", data, progress=False)
    assert result.features.shape == (14, 32)
    assert result.ids[0] == "reviews.tsv#0" and result.labels.tolist() == [1] * 7 + [0] * 7


def test_a_run_directory_embeds_with_its_trained_backbone(images, tmp_path):
    run = tmp_path / "run"
    train(
        TrainConfig(
            model="tiny-cnn",
            strategy="lora:2",
            data=str(images),
            out=str(run),
            epochs=2,
            batch_size=4,
            lr=5e-2,
            val_fraction=0.25,
        )
    )
    trained = embed(str(run), images, progress=False)
    base = embed("tiny-cnn", images, progress=False)
    assert trained.model == str(run) and trained.ids.tolist() == base.ids.tolist()
    assert not np.allclose(trained.features, base.features)  # the merged LoRA changed what the backbone computes


def test_cli_writes_an_npz_that_loads_without_pickle(images, tmp_path, capsys):
    out = tmp_path / "feats.npz"
    assert main(["embed", "--model", "tiny-cnn", "--data", str(images), "--out", str(out), "--batch-size", "5"]) == 0
    assert "12 examples x 1280 features from tiny-cnn block 4 (neck)" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as f:
        assert f["features"].shape == (12, 1280) and f["ids"].shape == (12,) and f["labels"].shape == (12,)
        assert f["classes"].tolist() == ["blue", "red"] and str(f["model"]) == "tiny-cnn"


@pytest.mark.parametrize(
    "model, data, fragment",
    [
        ("tiny-cnn", "reviews.tsv", "the model reads images"),
        ("tiny-bert", "images", "the model reads text"),
        ("tiny-cnn", "missing", "no such file or folder"),
    ],
)
def test_data_of_the_wrong_kind_is_one_line_exit_2(images, tmp_path, capsys, model, data, fragment):
    paths = {"reviews.tsv": write_text_tsv(tmp_path / "reviews.tsv"), "images": images, "missing": tmp_path / "nope"}
    code = main(["embed", "--model", model, "--data", str(paths[data]), "--out", str(tmp_path / "f.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "f.npz").exists()


def test_a_block_out_of_range_is_an_error(images, capsys, tmp_path):
    code = main(
        ["embed", "--model", "tiny-cnn", "--data", str(images), "--out", str(tmp_path / "f.npz"), "--block", "9"]
    )
    assert code == 2 and "block 9 does not exist" in capsys.readouterr().err
