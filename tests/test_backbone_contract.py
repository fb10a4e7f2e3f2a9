"""The backbone contract: blocks in order then head, any split point, the families agree with their libraries."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_MODELS, make_batch
from tunelab import load_backbone
from tunelab.models.families.tiny import tiny_bert, tiny_cnn


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_running_from_any_block_boundary_gives_the_same_output(model_name):
    backbone = load_backbone(model_name)
    backbone.replace_head(3)
    model = backbone.model.eval()
    batch, _ = make_batch(backbone)
    with torch.no_grad():
        full = model(batch)
        for k in range(len(backbone.blocks) + 1):
            prefix = model(batch, stop=k)
            assert torch.equal(model(prefix, start=k), full), k


def test_cnn_family_matches_torchvision_forward():
    net = tiny_cnn().eval()
    backbone = load_backbone("tiny-cnn")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(backbone.model.eval()(x), net(x), atol=1e-6)


def test_bert_family_matches_transformers_forward():
    net, tokenizer = tiny_bert()
    backbone = load_backbone("tiny-bert")
    batch = dict(
        tokenizer(["the film was fun", "a very long and boring story , really"], padding=True, return_tensors="pt")
    )
    with torch.no_grad():
        hidden = net.eval()(**batch).last_hidden_state
        state = backbone.model.eval()(batch, stop=len(backbone.blocks))
    assert torch.allclose(state.hidden, hidden, atol=1e-5)
    assert torch.equal(state.mask, batch["attention_mask"])


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_replace_head_gives_a_fresh_head_of_the_right_size(model_name):
    backbone = load_backbone(model_name)
    old = backbone.head
    head = backbone.replace_head(5)
    assert head is backbone.model.head and head is not old
    assert backbone.num_outputs == 5
    batch, _ = make_batch(backbone)
    assert backbone.model.eval()(batch).shape == (4, 5)


def test_block_structure_of_the_tiny_models():
    cnn, bert = load_backbone("tiny-cnn"), load_backbone("tiny-bert")
    assert cnn.block_names == ["stem", "stage1", "stage2", "stage3", "neck"]
    assert [s.block for s in cnn.adapter_sites] == [1, 2, 3]  # stages only: not the stem, not the neck
    assert bert.block_names == ["embeddings", "layer.0", "layer.1"]
    assert [s.block for s in bert.adapter_sites] == [1, 1, 2, 2]  # attention output and FFN output per layer
    assert cnn.num_features == 1280 and bert.num_features == 32
    assert cnn.modality == "image" and bert.modality == "text"
