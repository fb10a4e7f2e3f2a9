"""Advice: frozen feature extraction, the data profile, the decision rule on hand-made evidence, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from train_fixtures import write_image_folder, write_text_tsv

import tunelab.advise.decide as advise_module
from tunelab.advise.decide import (
    Budget, DataProfile, Evidence, Thresholds, advise, decide, profile, stratified_sample, transfer_depth,
)
from tunelab.data import read_image_folder, read_text_table
from tunelab.errors import TunelabError
from tunelab.runs.features import extract_features, pooled
from tunelab.runs.loaders import collate_for, example_dataset, make_loader
from tunelab.strategies import parse_strategy
from tunelab.models.zoo import load_backbone


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; with two, a busy machine spends seconds spinning in OpenMP."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=6)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return write_text_tsv(tmp_path_factory.mktemp("text") / "reviews.tsv", repeats=2)


def examples_for(kind, images, text):
    return read_image_folder(images) if kind == "image" else read_text_table(text)


# ---------------------------------------------------------------- features


@pytest.mark.parametrize("model, kind, blocks", [("tiny-cnn", "image", [0, 2, 4]), ("tiny-bert", "text", [0, 1, 2])])
def test_extract_features_equals_a_manual_pooled_forward(model, kind, blocks, images, text):
    backbone = load_backbone(model)
    examples = examples_for(kind, images, text)
    if kind == "text":  # texts run sorted by length: rows must come back in the examples' order
        lengths = [len(t) for t in examples.inputs]
        assert lengths != sorted(lengths)
    backbone.model.train()
    features = extract_features(backbone, examples, blocks=blocks, batch_size=5, progress=False)
    assert backbone.model.training and all(m.training for m in backbone.model.modules())  # mode restored
    assert sorted(features) == blocks
    dataset = example_dataset(examples, backbone, train=False, augment=False)
    loader = make_loader(dataset, 64, collate_for(backbone, None), 0)
    batch, _ = next(iter(loader))
    backbone.model.eval()
    with torch.no_grad():
        for i in blocks:
            manual = pooled(backbone.model(batch, stop=i + 1)).numpy()
            assert features[i].dtype == np.float32 and features[i].shape == (len(examples), manual.shape[1])
            np.testing.assert_allclose(features[i], manual, rtol=1e-4, atol=1e-5)
    assert list(extract_features(backbone, examples, progress=False)) == [len(backbone.blocks) - 1]


def test_pooled_averages_maps_and_ignores_padding():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pooled(maps), maps.mean(dim=(2, 3)))
    from tunelab.models.families.transformers import TokenState

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    state = TokenState(hidden, torch.tensor([[1, 1, 0]]))
    assert torch.equal(pooled(state), torch.tensor([[2.0, 3.0]]))


class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("shape mismatch\nsecond line")


def test_a_model_that_fails_to_run_is_named_in_a_one_line_error(images):
    backbone = load_backbone("tiny-cnn")
    backbone.model.blocks[2] = Broken()
    message = r"tiny-cnn: block 2 \(stage2\) failed with RuntimeError: shape mismatch$"
    with pytest.raises(TunelabError, match=message) as info:
        extract_features(backbone, read_image_folder(images), blocks=[3], progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(TunelabError, match="block 9 does not exist: tiny-cnn has 5 blocks"):
        extract_features(backbone, read_image_folder(images), blocks=[9], progress=False)


# ---------------------------------------------------------------- profile and sampling


def test_profile_counts_classes_and_reads_image_sizes_and_text_lengths(images, text):
    p = profile(read_image_folder(images))
    assert (p.modality, p.n, p.classes, p.per_class_median, p.imbalance) == ("image", 12, 2, 6.0, 1.0)
    assert p.image_sizes == {"width": [40, 40, 40], "height": [40, 40, 40]}
    t = profile(read_text_table(text))
    assert t.modality == "text" and t.text_chars[0] == len("bad movie") and t.image_sizes is None


def test_stratified_sample_keeps_proportions_and_two_per_class():
    labels = [0] * 900 + [1] * 90 + [2] * 3
    index = stratified_sample(labels, 100, seed=0)
    picked = np.bincount(np.asarray(labels)[index])
    assert len(index) == 100 and picked[2] == 2 and 85 <= picked[0] <= 92
    assert index == stratified_sample(labels, 100, seed=0) and index == sorted(index)
    assert stratified_sample(labels[:50], 100) == list(range(50))


# ---------------------------------------------------------------- the rule


def data(per_class: float, classes: int = 4) -> DataProfile:
    n = int(per_class * classes)
    return DataProfile("image", n, classes, {str(c): int(per_class) for c in range(classes)}, int(per_class), per_class,
                       int(per_class), 1.0)


PARAMS = {
    "none": 5_000, "full": 2_000_000, "retrain:3": 900_000, "adapter": 40_000, "lora": 150_000, "scratch": 2_000_000,
}


def measured(gain: float, noise: float = 0.01, per_block=(0.1, 0.3, 0.5, 0.4, 0.2)) -> Evidence:
    return Evidence(
        sample_size=400, control_size=300, block_names=["stem", "s1", "s2", "s3", "neck"], logme_pretrained=-0.2 + gain,
        logme_control=-0.2, logme_gain_noise=noise, logme_per_block=list(per_block), nearest_centroid_pretrained=0.9,
        nearest_centroid_control=0.6, chance_accuracy=0.25, trainable_params=dict(PARAMS),
        memory_mb={k: 4 * (2_000_000 + 3 * v) / 2**20 for k, v in PARAMS.items()},
    )


def test_transfer_depth_finds_where_features_stop_transferring():
    assert transfer_depth([0.1, 0.3, 0.5, 0.4, 0.2], 0.05) == (3, 2, 3)  # falls by 0.1 at block 3: freeze 0-2
    assert transfer_depth([0.1, 0.3, 0.5, 0.47, 0.2], 0.05) == (4, 2, 4)  # a 0.03 dip is a plateau
    assert transfer_depth([0.1, 0.2, 0.3, 0.4, 0.5], 0.05) == (4, 4, None)  # still rising: all but the last block
    assert transfer_depth([0.9, 0.1, 0.2], 0.05) == (1, 0, 1)  # at least one block frozen
    assert transfer_depth([0.1, 0.0, 0.5, 0.5], 0.05) == (3, 2, None)  # a dip before the peak does not count


@pytest.mark.parametrize(
    "per_class, gain, noise, expected",
    [
        (20, 0.5, 0.01, ("none", "adapter")),  # small + similar
        (20, 0.02, 0.01, ("retrain:3", "adapter")),  # small + dissimilar: K where the curve falls
        (500, 0.5, 0.01, ("full", "none")),  # large + similar
        (500, 0.04, 0.01, ("full", "retrain:3")),  # large + dissimilar, pretraining still helps a little
        (500, 0.01, 0.01, ("full", "scratch")),  # large + dissimilar, control within noise
    ],
)
def test_decide_covers_the_four_quadrants(per_class, gain, noise, expected):
    recommendation, runner_up, reasons = decide(data(per_class), measured(gain, noise), Thresholds(), Budget())
    assert (recommendation, runner_up) == expected
    parse_strategy(recommendation), parse_strategy(runner_up)
    assert reasons[0].startswith("Small" if per_class < 100 else "Large") and f"{per_class:g}" in reasons[0]
    similar = gain >= Thresholds().similar_logme_gain
    assert reasons[1].startswith("Similar" if similar else "Dissimilar") and f"{gain:+.3f}" in reasons[1]


def test_thresholds_move_the_boundaries():
    assert decide(data(20), measured(0.5), Thresholds(small_per_class=10), Budget())[0] == "full"
    assert decide(data(20), measured(0.5), Thresholds(similar_logme_gain=1.0), Budget())[0] == "retrain:3"
    assert decide(data(20), measured(0.02), Thresholds(transfer_drop=0.5), Budget())[0] == "retrain:4"
    with pytest.raises(TunelabError, match="transfer_drop"):
        Thresholds(transfer_drop=-1)


def test_a_budget_swaps_full_for_a_strategy_that_fits():
    recommendation, runner_up, reasons = decide(data(500), measured(0.5), Thresholds(), Budget(params=100_000))
    assert (recommendation, runner_up) == ("adapter", "none")
    assert "full trains 2,000,000 parameters" in reasons[-1] and "100,000" in reasons[-1]
    assert decide(data(500), measured(0.5), Thresholds(), Budget(params=200_000))[:2] == ("adapter", "lora")
    full_mb = measured(0.5).memory_mb["full"]
    assert decide(data(500), measured(0.5), Thresholds(), Budget(memory_mb=full_mb - 1))[0] == "adapter"
    assert decide(data(500), measured(0.5), Thresholds(), Budget(params=10))[0] == "none"  # nothing fits: the least


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("model, kind", [("tiny-cnn", "image"), ("tiny-bert", "text")])
def test_advise_end_to_end_returns_a_valid_strategy_with_its_evidence(model, kind, images, text):
    data_path = images if kind == "image" else text
    result = advise(model, str(data_path), max_examples=20, control_examples=8, progress=False)
    parse_strategy(result.recommendation), parse_strategy(result.runner_up)
    e = result.evidence
    assert e["sample_size"] <= 20 and e["control_size"] == 8 and e["n"] == len(examples_for(kind, images, text))
    assert len(e["logme_per_block"]) == len(e["block_names"]) and all(np.isfinite(e["logme_per_block"]))
    assert {"none", "full", "adapter", "scratch"} <= set(e["trainable_params"]) and e["seconds"] > 0
    assert json.loads(json.dumps(result.to_dict()))["recommendation"] == result.recommendation
    assert result.format().startswith(f"recommendation: {result.recommendation}")


def test_advise_with_separate_validation_data_reports_the_shift(images, tmp_path):
    val = write_image_folder(tmp_path / "val", per_class=4, seed=1)
    result = advise("tiny-cnn", str(images), val_data=str(val), control_examples=8, progress=False)
    e = result.evidence  # size is judged on what will be trained on; features use train and val pooled
    assert e["n"] == len(read_image_folder(images)) and e["sample_size"] == e["n"] + 8 and e["train_val_shift"] >= 0


def test_bad_input_is_a_one_line_error(tmp_path, text, monkeypatch):
    one_class = tmp_path / "one.tsv"
    one_class.write_text("sentence\tlabel\ngood\t1\nfine\t1\ngreat\t1\n")
    with pytest.raises(TunelabError, match="at least 2 classes"):
        advise("tiny-bert", str(one_class), progress=False)
    train, val = tmp_path / "train.tsv", tmp_path / "val.tsv"
    train.write_text("sentence\tlabel\ngood\t1\nfine\t1\nbad\t0\n")
    val.write_text("sentence\tlabel\ngreat\t1\n")
    with pytest.raises(TunelabError, match="class '0' has 1 example"):
        advise("tiny-bert", str(train), val_data=str(val), progress=False)
    with pytest.raises(TunelabError, match="tiny-cnn is a model for images"):
        advise("tiny-cnn", str(text), progress=False)
    with pytest.raises(TunelabError, match="budget_params"):
        advise("tiny-bert", str(text), budget_params=0, progress=False)

    def broken(name, pretrained=True):
        backbone = load_backbone("tiny-bert", pretrained)
        backbone.model.blocks[1] = Broken()
        return backbone

    monkeypatch.setattr(advise_module, "load_backbone", broken)
    with pytest.raises(TunelabError, match="cannot extract features from tiny-bert"):
        advise("tiny-bert", str(text), progress=False)
