"""FGM/PGD: the weights are exactly restored, gradients are clean + adversarial, frozen stays frozen, any strategy."""

from __future__ import annotations

import pytest
import torch

from conftest import make_batch
from tunelab.errors import TunelabError
from tunelab.runs.adversary import Adversary
from tunelab.runs.prepare import prepare
from tunelab.tasks.base import task_loss

SPECS = ["none", "full", "retrain:1", "adapter", "lora:2", "scratch"]


def _setup(spec: str):
    plan = prepare("tiny-bert", spec, 3, task="text-classification")
    model = plan.backbone.model
    model.eval()  # no dropout: two forward passes on the same weights give the same loss
    inputs, labels = make_batch(plan.backbone)
    trained = [p for g in plan.groups for p in g.params]
    return plan, model, trained, lambda: task_loss(model(inputs), labels)


def _clean_grads(model, trained, compute_loss):
    model.zero_grad(set_to_none=True)
    compute_loss().backward()
    grads = [p.grad.clone() for p in trained]
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("method", ["fgm", "pgd"])
@pytest.mark.parametrize("spec", SPECS)
def test_an_adversarial_step_leaves_every_weight_exactly_as_it_found_it(spec, method):
    plan, model, trained, compute_loss = _setup(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    clean = _clean_grads(model, trained, compute_loss)

    adversary = Adversary(plan.backbone.word_embeddings, method, epsilon=1.0, steps=3)
    loss = adversary.backward(compute_loss, lambda x: x.backward(), trained)

    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, before the optimizer step
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen
    weight = plan.backbone.word_embeddings.weight
    assert weight.requires_grad == (spec in ("full", "scratch"))
    if not weight.requires_grad:
        assert weight.grad is None
    assert loss.item() == pytest.approx(compute_loss().item())  # the returned loss is the clean one
    changed = [not torch.equal(p.grad, g) for p, g in zip(trained, clean)]
    assert any(changed)  # the adversarial gradient was added


def test_fgm_gradient_is_the_clean_plus_the_perturbed_gradient():
    plan, model, trained, compute_loss = _setup("full")
    weight = plan.backbone.word_embeddings.weight
    clean = _clean_grads(model, trained, compute_loss)

    # by hand: one step of size epsilon along the normalised table gradient, on the rows the batch used
    model.zero_grad(set_to_none=True)
    compute_loss().backward()
    grad = weight.grad.clone()
    rows = torch.nonzero(grad.abs().sum(1)).squeeze(1)
    original = weight.detach().clone()
    with torch.no_grad():
        weight[rows] += 0.5 * grad[rows] / torch.linalg.vector_norm(grad[rows])
    adversarial = _clean_grads(model, trained, compute_loss)
    with torch.no_grad():
        weight.copy_(original)

    Adversary(plan.backbone.word_embeddings, "fgm", epsilon=0.5).backward(compute_loss, lambda x: x.backward(), trained)
    for p, c, a in zip(trained, clean, adversarial):
        torch.testing.assert_close(p.grad, c + a)


def test_bad_settings_are_refused():
    embedding = torch.nn.Embedding(4, 2)
    with pytest.raises(TunelabError, match="one of fgm, pgd"):
        Adversary(embedding, "fsgm")
    with pytest.raises(TunelabError, match="positive"):
        Adversary(embedding, "fgm", epsilon=0)
