"""Advice: frozen feature extraction, the data profile, the decision rule on hand-made evidence, end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch import nn

import tunelab.advice.measure as measure_module
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.advice.api import advise
from tunelab.advice.decide import (
    FITTED,
    Budget,
    Evidence,
    Measurements,
    Thresholds,
    decide,
    holds,
    retrain_depths,
    transfer_depth,
)
from tunelab.advice.measure import candidate_specs, candidates
from tunelab.advice.profile import DataProfile, profile, stratified_sample
from tunelab.data import read_image_folder, read_text_table
from tunelab.errors import TunelabError
from tunelab.models.zoo import load_backbone
from tunelab.runs.features import extract_features, pooled
from tunelab.runs.loaders import collate_for, example_dataset, make_loader
from tunelab.strategies import REGISTRY, Plan, Strategy, parse_strategy, registered_strategy
from tunelab.strategies.base import block_groups, freeze, head_group, unfreeze


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
    from tunelab.models.contract import TokenState

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


# ---------------------------------------------------------------- the rule (a pure function of hand-made measurements)


def data(per_class: float, classes: int = 4, smallest: int | None = None) -> DataProfile:
    n = int(per_class * classes)
    smallest = int(per_class) if smallest is None else smallest
    return DataProfile(
        "image",
        n,
        classes,
        {str(c): int(per_class) for c in range(classes)},
        smallest,
        per_class,
        int(per_class),
        per_class / smallest,
    )


PARAMS = {
    "none": 5_000,
    "full": 2_000_000,
    "retrain:1": 1_900_000,
    "retrain:3": 900_000,
    "adapter": 40_000,
    "lora": 150_000,
    "scratch": 2_000_000,
}

RISING = (0.5, 0.6, 0.7, 0.8, 0.85)
"""A probe curve that keeps rising to the last block: the features transfer whole."""
FALLING = (0.5, 0.7, 0.9, 0.8, 0.7)
"""A curve that peaks at block 2 and falls by 0.2: the last two blocks are specialised."""


def evidence(curve=RISING, control: float = 0.6, **changes) -> Evidence:
    values = dict(
        sample_size=80,
        control_size=80,
        block_names=["stem", "s1", "s2", "s3", "neck"],
        logme_pretrained=0.3,
        logme_control=-0.2,
        logme_gain_noise=0.01,
        logme_per_block=[0.1, 0.2, 0.3, 0.3, 0.3],
        nearest_centroid_pretrained=0.9,
        nearest_centroid_control=0.6,
        chance_accuracy=0.25,
        trainable_params=dict(PARAMS),
        memory_mb={k: 4 * (2_000_000 + 3 * v) / 2**20 for k, v in PARAMS.items()},
        probe_per_block=list(curve),
        probe_control=control,
        rows=80,
    )
    return Evidence(**{**values, **changes})


def measured(per_class: float, curve=RISING, efficient=("adapter", "lora"), profile=None, **changes) -> Measurements:
    """Measurements as `measure` would return them, written by hand: no model, no data."""
    return Measurements(
        model="some-model",
        data="some/data",
        task="image-classification",
        profile=profile or data(per_class),
        evidence=evidence(curve, **changes),
        parameter_efficient=tuple(efficient),
        seconds_features=1.5,
        seconds=2.25,
    )


def test_retrain_depths_are_a_third_and_two_thirds_of_the_blocks():
    assert retrain_depths(9) == (3, 6) and retrain_depths(7) == (2, 4) and retrain_depths(5) == (1, 3)
    assert retrain_depths(2) == (1,) and retrain_depths(1) == (1,)


def test_a_choice_holds_within_a_point_of_the_best_or_within_its_seed_spread():
    assert holds(0.80, 0.80) and holds(0.791, 0.80) and not holds(0.785, 0.80)
    assert holds(0.77, 0.80, best_spread=0.03) and not holds(0.76, 0.80, best_spread=0.03)
    assert holds(0.90, 0.80)  # better than the "best" it was compared with


def test_transfer_depth_freezes_up_to_the_probe_peak():
    assert transfer_depth(list(FALLING), 0.05) == (3, 2, True)  # peak at block 2: freeze blocks 0-2
    assert transfer_depth([0.5, 0.9, 0.8, 0.7, 0.6], 0.05) == (1, 1, True)  # 3 would freeze block 2: too deep
    assert transfer_depth([0.5, 0.7, 0.9, 0.88, 0.87], 0.05) == (3, 2, False)  # a 0.03 fall is within the noise
    assert transfer_depth(list(RISING), 0.05) == (3, 4, False)


RULE = Thresholds(small_per_class=100, similar_probe_gain=0.3, transfer_drop=0.05, small_strategy="lora")
"""Thresholds for the table tests, written out so the tests do not move when the fitted defaults do."""


@pytest.mark.parametrize(
    "per_class, curve, control, expected",
    [
        (20, RISING, 0.6, ("lora", "none")),  # small, transfer whole, gain 0.25 < 0.3: adapt with few weights
        (20, RISING, 0.5, ("none", "lora")),  # small and similar (gain 0.35): a head on the features as they are
        (20, FALLING, 0.6, ("retrain:3", "lora")),  # small, late blocks specialised: retrain them
        (500, RISING, 0.6, ("full", "lora")),  # large
        (500, FALLING, 0.6, ("full", "retrain:3")),  # large, the specialised blocks' retrain as the cheaper runner-up
    ],
)
def test_decide_follows_the_table(per_class, curve, control, expected):
    advice = decide(measured(per_class, curve, control=control), RULE, Budget())
    assert (advice.recommendation, advice.runner_up) == expected
    parse_strategy(advice.recommendation), parse_strategy(advice.runner_up)
    reasons = advice.reasons
    assert reasons[0].startswith("Little data" if per_class < 100 else "Enough data")
    assert f"{per_class:g} examples" in reasons[0]
    assert f"against {control:.1%}" in reasons[1]
    assert ("not similar" in reasons[1]) == (curve[-1] - control < 0.3)
    assert ("specialised" in reasons[2]) == (curve is FALLING)


def test_scratch_is_named_when_pretrained_features_are_no_better_than_random_ones():
    advice = decide(measured(500, RISING, control=0.845))
    assert advice.recommendation == "full" and any("scratch" in r for r in advice.reasons)
    assert not any("scratch" in r for r in decide(measured(500, RISING)).reasons)


def test_the_gain_compares_both_models_on_the_control_s_examples():
    """With the control on a part of the sample, the whole-sample probe (more rows, higher accuracy) would
    flatter the gain; the pretrained probe on the control's own rows is what it is compared with."""
    part = measured(20, RISING, control=0.5, control_size=40, probe_pretrained=0.6)
    advice = decide(part, RULE)
    assert advice.recommendation == "lora"  # a gain of 0.10, not the 0.35 of 0.85 against 0.5
    assert "on 40 of them it reaches 60.0%, against 50.0%" in advice.reasons[1] and "+10.0 points" in advice.reasons[1]
    assert decide(measured(20, RISING, control=0.5), RULE).recommendation == "none"  # older measurements: same rows
    assert "of them it reaches" not in decide(measured(20, RISING, control=0.5), RULE).reasons[1]


def test_named_entity_sentences_are_drawn_until_their_words_are_enough():
    tags = [[0] * 10 for _ in range(1000)]
    index = measure_module._sentences(tags, 500, seed=0)
    words = measure_module.MAX_ROWS * measure_module.ROW_MARGIN
    assert len(index) == int(words) // 10 and index == sorted(set(index))  # 2,500 words: 250 of the 500 sentences
    assert len(measure_module._sentences(tags, 100, seed=0)) == 100  # fewer sentences allowed: all of them
    assert len(measure_module._sentences(tags[:7], 500, seed=0)) == 7


def test_decide_reports_the_measurements_and_its_inputs_in_the_record():
    m = measured(20, FALLING)
    advice = decide(m, replace(RULE, transfer_drop=0.1), Budget(params=10**9))
    record = advice.to_dict()["evidence"]
    assert (record["model"], record["data"], record["task"]) == ("some-model", "some/data", "image-classification")
    assert record["thresholds"] == {
        "small_per_class": 100,
        "similar_probe_gain": 0.3,
        "transfer_drop": 0.1,
        "small_strategy": "lora",
    }
    assert record["budget"] == {"params": 10**9, "memory_mb": None}
    assert record["probe_per_block"] == list(FALLING) and record["per_class_median"] == 20
    assert (record["seconds_features"], record["seconds"]) == (1.5, 2.25)
    assert "parameter_efficient" not in record  # the JSON keeps the keys it always had
    text = advice.format().splitlines()
    assert text[0] == "recommendation: retrain:3    runner-up: lora"
    assert text[-1] == "measured some-model on all 80 examples in 2.2 s"  # a sample no larger than the data
    assert text[-2].startswith("  per-block linear-probe accuracy of the pretrained features: ")
    assert "s2 90.0% (peak)" in text[-2]
    assert decide(m, replace(RULE, transfer_drop=0.1), Budget(params=10**9)) == advice  # pure: same input, same advice


def test_the_advice_names_the_constant_rule_it_has_to_beat():
    agrees, differs = decide(measured(20), RULE), decide(measured(20, FALLING), RULE)
    assert agrees.baseline == {"rule": "always lora", "recommendation": "lora", "agrees": True}
    assert differs.baseline["agrees"] is False and differs.to_dict()["baseline"]["recommendation"] == "lora"
    assert "baseline: the rule 'always lora' would choose lora" in differs.format()
    assert "baseline" not in agrees.format()


def test_measurements_survive_a_json_round_trip():
    m = measured(20, FALLING)
    again = Measurements.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m and decide(again) == decide(m)


def test_measurements_without_probes_are_refused():
    with pytest.raises(TunelabError, match="no per-block probe"):
        decide(measured(20, probe_per_block=[], probe_control=None))


def test_decide_adds_caveats_for_imbalance_and_a_validation_shift():
    skewed = measured(500, profile=data(500, smallest=20))
    assert "imbalanced (500:20" in decide(skewed).reasons[-1]
    shifted = measured(500, train_val_shift=2.0, train_halves_shift=0.5)
    assert "4.0x more than two halves" in decide(shifted).reasons[-1]
    steady = measured(500, train_val_shift=1.0, train_halves_shift=0.5)
    assert not any("halves" in r for r in decide(steady).reasons)


def test_a_model_with_one_block_gets_full_instead_of_retrain():
    advice = decide(measured(500, (0.3,), block_names=["only"]))
    assert advice.recommendation == "full"


def test_thresholds_move_the_boundaries():
    assert decide(measured(20), replace(RULE, small_per_class=10), Budget()).recommendation == "full"
    assert decide(measured(20, FALLING), replace(RULE, transfer_drop=0.5), Budget()).recommendation == "lora"
    assert decide(measured(20), replace(RULE, similar_probe_gain=0.2), Budget()).recommendation == "none"
    assert decide(measured(20), replace(RULE, small_strategy="adapter"), Budget()).recommendation == "adapter"
    assert decide(measured(20), replace(RULE, small_strategy="none"), Budget()).runner_up == "lora"
    with pytest.raises(TunelabError, match="transfer_drop"):
        Thresholds(transfer_drop=-1)
    with pytest.raises(TunelabError, match="small_per_class"):
        Thresholds(small_per_class=0)
    with pytest.raises(TunelabError, match="small_strategy"):
        Thresholds(small_strategy="full")


def test_unset_thresholds_are_the_ones_fitted_for_the_data_s_modality():
    image = measured(20, RISING, control=0.6)  # small for images, features transfer whole, probe gain 0.25
    small_text = measured(10, RISING, control=0.6)  # text is small below 20 per class
    text = replace(small_text, task="text-classification", profile=replace(small_text.profile, modality="text"))
    advised = {m: decide(x).to_dict()["evidence"]["thresholds"] for m, x in (("image", image), ("text", text))}
    assert advised == FITTED  # the record says which set decided
    assert decide(image).recommendation == "none"  # 0.25 >= images' 0.2: similar, a head on the features
    assert decide(text).recommendation == "none"  # 0.25 >= text's 0.1
    unlike = {"control": 0.8}  # a gain of 0.05: below both bars
    assert decide(measured(20, RISING, **unlike)).recommendation == FITTED["image"]["small_strategy"] == "lora"
    text_unlike = replace(text, evidence=measured(10, RISING, **unlike).evidence)
    assert decide(text_unlike).recommendation == FITTED["text"]["small_strategy"] == "adapter"
    large_text = replace(text, profile=replace(measured(20).profile, modality="text"))
    assert decide(large_text).recommendation == "full"  # 20 per class is enough to fine-tune a text encoder
    assert decide(text_unlike, Thresholds(small_strategy="lora")).recommendation == "lora"  # a given value wins
    given = Thresholds(small_per_class=10).for_modality("text")
    assert given == Thresholds(**{**FITTED["text"], "small_per_class": 10})
    assert Thresholds(small_strategy="none").for_modality("text").small_strategy == "none"  # the strategy, not unset
    assert Thresholds().small_strategy == "auto" and Thresholds().for_modality("image") == Thresholds(**FITTED["image"])


def test_a_budget_swaps_full_for_a_strategy_that_fits():
    advice = decide(measured(500), Thresholds(), Budget(params=100_000))
    assert (advice.recommendation, advice.runner_up) == ("adapter", "none")
    why = advice.reasons[-1]
    assert "would choose full, which trains 2,000,000 parameters" in why and "budget of 100,000" in why
    assert not any("fine-tuning every weight" in r for r in advice.reasons)  # only what the budget allows is advised
    assert "lora is the runner-up" in decide(measured(500), RULE).reasons[-1]
    alone = decide(measured(20), replace(RULE, similar_probe_gain=0.2), Budget(params=5_000))  # only none fits
    assert (alone.recommendation, alone.runner_up) == ("none", "none")
    assert "no runner-up" in alone.reasons[-1] and not any("lora" in r for r in alone.reasons)
    assert decide(measured(500), Thresholds(), Budget(params=200_000)).runner_up == "lora"
    full_mb = measured(500).evidence.memory_mb["full"]
    assert decide(measured(500), Thresholds(), Budget(memory_mb=full_mb - 1)).recommendation == "adapter"
    nothing_fits = decide(measured(500), Thresholds(), Budget(params=10))
    assert nothing_fits.recommendation == "none" and "nothing fits" in nothing_fits.reasons[-1]  # the least of all
    with pytest.raises(TunelabError, match="budget_params"):
        Budget(params=0)
    with pytest.raises(TunelabError, match="budget_memory_mb"):
        Budget(memory_mb=-1.0)


def test_budget_fallbacks_are_the_measured_parameter_efficient_strategies_in_order():
    only_lora = decide(measured(500, efficient=("lora",)), Thresholds(), Budget(params=200_000))
    assert (only_lora.recommendation, only_lora.runner_up) == ("lora", "none")
    reordered = decide(measured(500, efficient=("lora", "adapter")), Thresholds(), Budget(params=200_000))
    assert (reordered.recommendation, reordered.runner_up) == ("lora", "adapter")
    without = decide(measured(500, efficient=()), Thresholds(), Budget(params=100_000))
    assert (without.recommendation, without.runner_up) == ("none", "adapter")  # a runner-up the budget allows


# ---------------------------------------------------------------- candidates come from the strategy registry


@dataclass(frozen=True)
class LastBlock(Strategy):
    """A throwaway strategy: only the last block and the head train (no inserted modules)."""

    key = "lastblock"
    summary = "last block + head (test only)"

    def apply(self, backbone) -> Plan:
        freeze(backbone.model)
        n = len(backbone.blocks)
        unfreeze(backbone.blocks[n - 1])
        return Plan(self, backbone, [*block_groups(backbone, n - 1, 0.1, None), head_group(backbone)])


def test_candidates_are_every_registered_strategy_and_peft_is_read_off_the_plans():
    expected = []
    for key in REGISTRY:
        expected += ["retrain:3", "retrain:6"] if key == "retrain" else [key]
    assert candidate_specs(9) == expected
    backbone = load_backbone("tiny-cnn")  # 5 blocks: retrain at 1 and 3
    with registered_strategy(LastBlock):
        assert candidate_specs(5)[-1] == "lastblock"
        params, memory, efficient = candidates(backbone, num_classes=2)
    assert set(params) == set(memory) == {*REGISTRY, "retrain:1", "retrain:3", "lastblock"} - {"retrain"}
    assert params["retrain:3"] < params["retrain:1"] < params["full"]
    assert all(p.requires_grad for p in backbone.model.parameters())  # each candidate shaped a copy
    assert params["none"] < params["lastblock"] < params["full"] == params["scratch"]
    assert efficient == ("adapter", "lora")  # they train only what they insert; lastblock trains pretrained weights


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("model, kind", [("tiny-cnn", "image"), ("tiny-bert", "text")])
def test_advise_end_to_end_returns_a_valid_strategy_with_its_evidence(model, kind, images, text):
    data_path = images if kind == "image" else text
    result = advise(model, str(data_path), max_examples=20, control_examples=8, budget_params=10**9, progress=False)
    parse_strategy(result.recommendation), parse_strategy(result.runner_up)
    e = result.evidence
    assert e["sample_size"] <= 20 and e["control_size"] == 8 and e["n"] == len(examples_for(kind, images, text))
    assert len(e["logme_per_block"]) == len(e["block_names"]) and all(np.isfinite(e["logme_per_block"]))
    assert len(e["probe_per_block"]) == len(e["block_names"]) and all(0 <= a <= 1 for a in e["probe_per_block"])
    assert 0 <= e["probe_control"] <= 1 and 0 <= e["probe_pretrained"] <= 1 and e["rows"] == e["sample_size"]
    assert {"none", "full", "adapter", "scratch"} <= set(e["trainable_params"]) and e["seconds"] > 0
    assert json.loads(json.dumps(result.to_dict()))["recommendation"] == result.recommendation
    assert result.format().startswith(f"recommendation: {result.recommendation}")


def test_advise_on_named_entities_measures_one_row_per_tagged_word(tmp_path):
    sentences = [
        ("Alice lives in Paris", "B-PER O O B-LOC"),
        ("Bob met Carol in Rome", "B-PER O B-PER O B-LOC"),
        ("Dave flew to Berlin today", "B-PER O O B-LOC O"),
        ("Eve and Frank saw Oslo", "B-PER O B-PER O B-LOC"),
    ] * 3
    path = tmp_path / "ner.conll"
    path.write_text(
        "\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.split(), tags.split())) for s, tags in sentences)
    )
    result = advise("tiny-bert", str(path), progress=False)
    e = result.evidence
    assert result.evidence["task"] == "token-classification" and e["unit"] == "words"
    assert e["rows"] == sum(len(s.split()) for s, _ in sentences)  # every word of every sentence, once
    assert e["class_counts"] == {"B-LOC": 12, "B-PER": 18, "I-LOC": 0, "I-PER": 0, "O": 27} and e["classes"] == 3
    assert "words per class" in result.reasons[0] and len(e["probe_per_block"]) == len(e["block_names"])
    assert e["trainable_params"] == {}  # sizes are measured only when a budget needs them
    parse_strategy(result.recommendation)


def test_extract_token_rows_gives_each_tagged_word_its_first_sub_token(tmp_path):
    from tunelab.data import Examples
    from tunelab.runs.features import extract_token_rows

    backbone = load_backbone("tiny-bert")
    examples = Examples([["good", "film"], ["a", "bad", "one", "!"]], [[1, 0], [0, 1, 0, 0]], ("O", "X"), "mem")
    (rows,), labels = extract_token_rows([(backbone, [0, 2])], examples, batch_size=2, progress=False)
    assert rows[2].shape == (6, backbone.num_features) and sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1]


def test_image_size_is_the_size_the_features_are_measured_at(images):
    from tunelab.advice.measure import measure

    small = measure("tiny-cnn", str(images), image_size=16, progress=False)
    large = measure("tiny-cnn", str(images), image_size=48, progress=False)
    assert small.evidence.logme_per_block != large.evidence.logme_per_block
    with pytest.raises(TunelabError, match="image_size is for image models"):
        measure("tiny-bert", "unused.tsv" if False else str(images), image_size=32, progress=False)


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

    monkeypatch.setattr(measure_module, "load_backbone", broken)
    with pytest.raises(TunelabError, match="cannot extract features from tiny-bert"):
        advise("tiny-bert", str(text), progress=False)


def test_samples_smaller_than_four_a_class_are_raised_to_it(images):
    result = advise("tiny-cnn", str(images), max_examples=2, control_examples=2, progress=False)
    classes = result.evidence["classes"]
    assert result.evidence["sample_size"] >= 4 * classes and result.evidence["control_size"] >= 4 * classes


def test_the_measured_line_says_what_the_sample_was_drawn_from():
    m = measured(20)
    wider = replace(m, evidence=replace(m.evidence, sample_size=400, pool_size=500))
    assert decide(wider).format().splitlines()[-1] == (
        "measured some-model on 400 of 500 examples (80 training + 420 validation) in 2.2 s"
    )
    whole = replace(m, evidence=replace(m.evidence, sample_size=80, pool_size=80))
    assert decide(whole).format().splitlines()[-1] == "measured some-model on all 80 examples in 2.2 s"
