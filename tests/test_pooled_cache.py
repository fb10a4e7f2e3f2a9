"""With every block frozen, the feature cache keeps each example's pooled vector, and the head computes from it
exactly what it computes from the whole feature map or every token."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_MODELS, make_batch
from tunelab.models.contract import head_pool
from tunelab.models.registry import load_backbone
from tunelab.runs.feature_cache import build_cache, collate_features
from tunelab.tasks.token_classification import TokenHead


@pytest.mark.parametrize("name", TINY_MODELS)
def test_the_cache_of_a_frozen_backbone_holds_one_pooled_vector_per_example(name, tmp_path):
    backbone = load_backbone(name, pretrained=False)
    backbone.replace_head(3)
    backbone.model.eval()
    batch, labels = make_batch(backbone)
    n = len(backbone.blocks)
    cached = build_cache(
        backbone.model,
        n,
        [(batch, labels)],
        labels.tolist(),
        budget_mb=100,
        spill_path=tmp_path / "cache.npy",
        device=torch.device("cpu"),
        desc="caching",
        pool=head_pool(backbone.head),
    )
    width = backbone.num_features
    assert cached.store.data.shape == ((4, width) if backbone.modality == "text" else (4, width, 1, 1))
    features, _ = collate_features([cached[i] for i in range(4)])
    with torch.no_grad():
        from_cache = backbone.model(features, start=n)
        whole = backbone.model(batch)
    torch.testing.assert_close(from_cache, whole, rtol=1e-5, atol=1e-6)


def test_heads_without_a_declared_pool_have_none():
    backbone = load_backbone("tiny-bert", pretrained=False)
    backbone.replace_head(2)
    assert head_pool(backbone.head) is not None
    backbone.model.head = TokenHead(backbone.num_features, 5)  # a tag per token: nothing to pool
    assert head_pool(backbone.head) is None
