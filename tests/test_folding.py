"""The BatchNorm-folded prefix of the feature pass: the same features, the model itself untouched."""

from __future__ import annotations

import torch
from torch import nn

from conftest import make_batch
from tunelab.runs.folding import folded_prefix
from tunelab.runs.prepare import prepare


def test_the_folded_prefix_computes_the_same_features_with_no_batchnorm_left():
    backbone = prepare("tiny-cnn", "none", 3).backbone
    model = backbone.model
    stop = len(model.blocks)
    for module in model.modules():  # BatchNorm statistics and affine of a trained model, not the init's 0 and 1
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = folded_prefix(model, stop)
    assert folded is not model and len(folded.blocks) == stop
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x, _ = make_batch(backbone)
    with torch.no_grad():
        expected = model.eval()(x, stop=stop)
        got = folded(x, stop=stop)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model's own weights are untouched


def test_a_prefix_without_batchnorm_or_short_of_the_head_is_used_as_it_is():
    model = prepare("tiny-bert", "none", 2).backbone.model
    assert folded_prefix(model, len(model.blocks)) is model
    cnn = prepare("tiny-cnn", "retrain:2", 2).backbone.model  # blocks trained after it would amplify the rounding
    assert folded_prefix(cnn, 2) is cnn
