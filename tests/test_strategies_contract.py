"""The contract every registered strategy keeps, on a tiny CNN and a tiny BERT.

The tests iterate the registry: a new strategy is tested here by registering it, with only its closed-form
trainable count to add below.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from torch import nn

from conftest import TINY_MODELS, make_batch
from tunelab.errors import TunelabError
from tunelab.models.zoo import load_backbone
from tunelab.runs.prepare import prepare
from tunelab.strategies import REGISTRY, parse_strategy, set_train_mode
from tunelab.strategies.base import batchnorm_types
from tunelab.strategies.describe import format_plan
from tunelab.strategies.layers import merge_lora
from tunelab.strategies.lora import LoRA
from tunelab.strategies.scratch import Scratch

KEYS = list(REGISTRY)
"""Every registered strategy, each at its default settings."""


def train_steps(plan, steps: int = 3, lr: float = 1e-2):
    model = plan.backbone.model
    batch, labels = make_batch(plan.backbone)
    optimizer = torch.optim.AdamW(plan.optimizer_groups(lr))
    for _ in range(steps):
        set_train_mode(model)
        loss = F.cross_entropy(model(batch), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("key", KEYS)
def test_exactly_the_intended_parameters_change(model_name, key):
    plan = prepare(model_name, key, num_classes=3)
    model = plan.backbone.model
    before = snapshot(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for g in plan.groups for n in g.names}
    train_steps(plan)
    after = snapshot(model)
    for name, _ in model.named_parameters():
        changed = not torch.equal(before[name], after[name])
        assert changed == (name in trainable), f"{key}: {name} changed={changed}, trainable={name in trainable}"
    for name, module in model.named_modules():
        if isinstance(module, batchnorm_types()):
            stats_changed = not torch.equal(before[f"{name}.running_mean"], after[f"{name}.running_mean"])
            frozen = not any(p.requires_grad for p in module.parameters())
            assert stats_changed == (not frozen), f"{key}: BN {name} stats changed={stats_changed}, frozen={frozen}"


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("key", KEYS)
def test_applying_a_strategy_leaves_logits_unchanged_and_records_what_it_inserted(model_name, key):
    """Freezing changes no weight and inserted modules start as the identity; `inserted` names exactly the new
    parameters (what `inspect` and the checkpoint rely on instead of recognising names)."""
    backbone = load_backbone(model_name, pretrained=False)  # tiny models are random either way; scratch needs this
    backbone.replace_head(3)
    batch, _ = make_batch(backbone)
    before = {id(p) for p in backbone.model.parameters()}
    backbone.model.eval()
    with torch.no_grad():
        reference = backbone.model(batch)
    plan = parse_strategy(key).apply(backbone)
    backbone.model.eval()
    with torch.no_grad():
        assert torch.allclose(backbone.model(batch), reference, atol=1e-6)
    added = {n for n, p in backbone.model.named_parameters() if id(p) not in before}
    assert plan.inserted_params == added
    assert bool(plan.inserted) == bool(added)


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("spec", ["adapter:4", "lora:2"])
def test_adapter_and_lora_insert_modules(model_name, spec):
    plan = prepare(model_name, spec, num_classes=3)
    assert plan.inserted and all(module.params for module in plan.inserted)
    assert set(plan.groups[0].names) == plan.inserted_params  # the inserted weights train, nothing else but the head


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_merged_lora_gives_the_same_logits(model_name):
    plan = prepare(model_name, "lora:2", num_classes=3)
    train_steps(plan)
    model = plan.backbone.model
    batch, _ = make_batch(plan.backbone)
    model.eval()
    with torch.no_grad():
        before = model(batch)
        merged = merge_lora(model)
        after = model(batch)
    assert merged == len(plan.backbone.lora_targets)
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert not torch.allclose(before, prepare(model_name, "none", 3).backbone.model.eval()(batch), atol=1e-4)
    assert torch.allclose(before, after, atol=1e-5)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def adapter_count(plan) -> int:
    """Each site: down (w x h + h) and up (h x w + w), h = w / reduction with a floor of 8."""
    total = 0
    for site in plan.backbone.adapter_sites:
        w = site.width
        h = min(w, max(8, w // plan.strategy.reduction))
        total += (w * h + h) + (h * w + w)
    return total


def lora_count(plan) -> int:
    """Each target: A (r x fan_in) and B (fan_out x r)."""
    total = 0
    for path in plan.backbone.lora_targets:
        base = plan.backbone.model.get_submodule(path).get_base_layer()
        fan_in = base.in_features if isinstance(base, nn.Linear) else base.in_channels
        fan_out = base.out_features if isinstance(base, nn.Linear) else base.out_channels
        total += plan.strategy.rank * (fan_in + fan_out)
    return total


CLOSED_FORM = {
    "none": lambda plan: 0,
    "full": lambda plan: n_params(plan.backbone.model) - n_params(plan.backbone.head),
    "retrain": lambda plan: sum(
        n_params(b) for b in plan.backbone.blocks[plan.strategy.frozen_blocks(plan.backbone) :]
    ),
    "adapter": adapter_count,
    "lora": lora_count,
    "bitfit": lambda plan: sum(p.numel() for n, p in plan.backbone.blocks.named_parameters() if n.endswith(".bias")),
    "lpft": lambda plan: n_params(plan.backbone.model) - n_params(plan.backbone.head),
    "gradual": lambda plan: n_params(plan.backbone.model) - n_params(plan.backbone.head),  # the union of its phases
    "wiseft": lambda plan: n_params(plan.backbone.model) - n_params(plan.backbone.head),
    "scratch": lambda plan: n_params(plan.backbone.model) - n_params(plan.backbone.head),
}
"""Trainable parameters besides the head, from the architecture's shapes and the strategy's settings."""


def test_every_registered_strategy_has_a_closed_form_count():
    assert set(CLOSED_FORM) == set(REGISTRY)


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("key", KEYS)
def test_trainable_counts_match_closed_form(model_name, key):
    plan = prepare(model_name, key, num_classes=3)
    head = plan.backbone.num_features * 3 + 3
    assert plan.trainable_params == CLOSED_FORM[key](plan) + head
    assert plan.trainable_params == sum(p.numel() for p in plan.backbone.model.parameters() if p.requires_grad)
    assert f"trainable params: {plan.trainable_params:,} || all params: {plan.total_params:,}" in plan.summary_line()


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_retrain_k_freezes_exactly_the_first_k_blocks(model_name):
    n = len(prepare(model_name, "none", 3).backbone.blocks)
    for k in range(n + 1):
        plan = prepare(model_name, f"retrain:{k}", 3)
        for i, block in enumerate(plan.backbone.blocks):
            flags = {p.requires_grad for p in block.parameters()}
            assert flags == ({False} if i < k else {True}), (k, i)
        assert all(p.requires_grad for p in plan.backbone.head.parameters())
        assert plan.frozen_prefix == k
    with pytest.raises(TunelabError, match=f"between 0 and {n}"):
        prepare(model_name, f"retrain:{n + 1}", 3)


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_frozen_blocks_run_in_eval_mode_and_trained_ones_in_train_mode(model_name):
    plan = prepare(model_name, "retrain:1", 3)
    set_train_mode(plan.backbone.model)
    assert not plan.backbone.blocks[0].training
    assert all(b.training for b in plan.backbone.blocks[1:]) and plan.backbone.head.training


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_layerwise_decay_gives_each_block_its_own_scale(model_name):
    plan = prepare(model_name, "full:decay=0.5", 3)
    n = len(plan.backbone.blocks)
    scales = {g.name: g.lr_scale for g in plan.groups}
    assert scales == {**{f"block.{i}": 0.5 ** (n - i) for i in range(n)}, "head": 1.0}
    default = {g.name: g.lr_scale for g in prepare(model_name, "full", 3).groups}
    assert default == {"backbone": 0.1, "head": 1.0}


def test_scratch_uses_random_weights_and_refuses_pretrained_ones():
    assert prepare("tiny-cnn", "scratch", 3).backbone.pretrained is False
    pretrained = load_backbone("tiny-cnn")
    pretrained.pretrained = True  # as a packaged model would be
    with pytest.raises(TunelabError, match="randomly initialised"):
        Scratch().apply(pretrained)


def test_lora_needs_layers_to_target():
    backbone = load_backbone("tiny-cnn")
    backbone.lora_targets = []
    with pytest.raises(TunelabError, match="no Linear layers"):
        LoRA().apply(backbone)


def test_freeze_bn_keeps_all_batchnorm_statistics_fixed():
    plan = prepare("tiny-cnn", "full:freeze_bn=true", 3)
    model = plan.backbone.model
    before = snapshot(model)
    train_steps(plan)
    after = snapshot(model)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)


def test_a_frozen_prefix_of_only_text_embeddings_is_not_cached_but_a_conv_stem_is():
    """Caching an embedding lookup would store every token's vector to save a table lookup."""
    text = prepare("tiny-bert", "lora:2", 3)
    assert (text.frozen_prefix, text.cached_prefix) == (1, 0)
    assert "frozen prefix: 1 of" in format_plan(text) and "recomputed" in format_plan(text)
    assert prepare("tiny-bert", "retrain:2", 3).cached_prefix == 2
    image = prepare("tiny-cnn", "adapter", 3)
    assert image.cached_prefix == image.frozen_prefix == 1
