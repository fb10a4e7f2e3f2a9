"""Domain adaptation (--adapt dann|adabn): the gradient reversal, DANN's step on a shifted task, AdaBN's
statistics, resume, and target labels never read."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import tunelab.runs.epoch as epoch_module
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.data.unlabelled import read_unlabelled
from tunelab.models.contract import TransferModel
from tunelab.models.zoo import load_backbone
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.domain import (
    Dann,
    DomainClassifier,
    WithTarget,
    adapt_batchnorm,
    domain_loss,
    reversal_weight,
    reverse_gradient,
)
from tunelab.runs.loaders import EpochShuffle, collate_for, example_dataset, make_loader
from tunelab.runs.loop import train
from tunelab.runs.trained import load_run
from tunelab.settings import TrainConfig
from tunelab.strategies.base import batchnorm_types
from tunelab.tasks.base import task_loss


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(model="tiny-cnn", strategy="full", epochs=3, batch_size=8, lr=1e-2, seed=0, val_fraction=0.25)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


# ---------------------------------------------------------------- gradient reversal and the ramp


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def test_gradient_reversal_flips_exactly_the_domain_branchs_gradient():
    torch.manual_seed(0)
    features, head, critic = nn.Linear(4, 3), nn.Linear(3, 2), DomainClassifier(3, hidden=5).eval()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 1, 0])
    domains = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # 3 source rows, then 3 target rows

    def grads(task_weight: float, reversal: float | None) -> dict[str, dict[str, torch.Tensor]]:
        """Gradients of task_weight * task loss + domain loss, the domain branch reversed (or not: None)."""
        for module in (features, head, critic):
            module.zero_grad(set_to_none=False)
        f = features(x)
        if reversal is None:  # no reversal layer: the domain loss pulls the features the ordinary way
            domain = nn.functional.binary_cross_entropy_with_logits(critic(f).squeeze(-1), domains)
        else:
            domain, _ = domain_loss(critic, f, 3, reversal)
        (task_weight * nn.functional.cross_entropy(head(f), y) + domain).backward()
        return {"features": _grads(features), "head": _grads(head), "critic": _grads(critic)}

    task = {
        k: {n: g - d for (n, g), d in zip(v.items(), grads(0.0, None)[k].values())} for k, v in grads(1.0, None).items()
    }
    plain = grads(0.0, None)  # the domain branch alone, without reversal
    for weight in (1.0, 0.3):
        reversed_only = grads(0.0, weight)
        both = grads(1.0, weight)
        for name in plain["features"]:  # the feature layer gets -weight x the domain gradient
            assert torch.allclose(reversed_only["features"][name], -weight * plain["features"][name], atol=1e-7)
            expected = task["features"][name] - weight * plain["features"][name]
            assert torch.allclose(both["features"][name], expected, atol=1e-6)
        for name in plain["critic"]:  # the domain classifier learns as it would without the reversal
            assert torch.equal(reversed_only["critic"][name], plain["critic"][name])
        for name in task["head"]:  # the task head never sees the domain loss
            assert torch.allclose(both["head"][name], task["head"][name], atol=1e-7)
            assert not reversed_only["head"][name].any()


def test_reverse_gradient_is_the_identity_forward():
    x = torch.randn(3, 4)
    assert torch.equal(reverse_gradient(x, 0.7), x)


def test_the_reversal_weight_ramps_from_0_to_the_adapt_weight():
    weights = [reversal_weight(p / 10, 2.0) for p in range(11)]
    assert weights[0] == 0.0 and weights == sorted(weights)
    assert weights[-1] == pytest.approx(2.0 * (2 / (1 + math.exp(-10)) - 1))
    assert reversal_weight(0.5, 1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)


def test_target_pairs_follow_seed_and_epoch_and_cover_the_target_set():
    pairs = WithTarget(EpochShuffle(10, seed=3), targets=4, seed=3)
    first = list(pairs)
    assert [i for i, _ in first] == list(EpochShuffle(10, seed=3))  # the source order of a source-only run
    assert sorted(j for _, j in first[:4]) == [0, 1, 2, 3]  # each target once before any repeats
    assert list(pairs) == first
    pairs.set_epoch(1)
    assert list(pairs) != first


# ---------------------------------------------------------------- DANN's step on two Gaussian domains


def _gaussians(n: int, angle: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes at (-1, 0) and (1, 0), rotated by `angle` degrees: the target domain is the source rotated."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    points = torch.randn(n, 2, generator=generator) * 0.4
    points[:, 0] += torch.where(labels == 1, 1.0, -1.0)
    a = math.radians(angle)
    rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rotation.T, labels


def _target_accuracy(adapt: bool, steps: int = 150) -> float:
    """A small MLP trained on the source domain, with or without DANN; its accuracy on the rotated target."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
    model = TransferModel([block], nn.Sequential(nn.Linear(8, 2)))
    source, labels = _gaussians(100, 0.0, seed=1)
    target, target_labels = _gaussians(100, 50.0, seed=2)  # the labels only score the result
    dann = Dann(SimpleNamespace(head=model.head), SimpleNamespace(seed=0, adapt_weight=1.0, epochs=1), "cpu")
    params = list(model.parameters()) + (list(dann.classifier.parameters()) if adapt else [])
    optimizer = torch.optim.Adam(params, lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    step = SimpleNamespace(
        accelerator=Accelerator(cpu=True),
        model=model,
        start=0,
        loss=task_loss,
        loader=range(steps),
        accumulation=1,
        scheduler=scheduler,
    )
    model.train()
    for _ in range(steps):
        if adapt:  # one batch: the source rows, then the target rows (no labels)
            dann.backward(step, torch.cat([source, target]), labels, None, 1.0, True)
        else:
            task_loss(model(source), labels).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        return (model(target).argmax(-1) == target_labels).float().mean().item()


def test_dann_beats_source_only_on_a_rotated_target_domain():
    source_only, dann = _target_accuracy(False), _target_accuracy(True)
    assert source_only < 0.85 and dann > 0.92 and dann - source_only > 0.1, (source_only, dann)


# ---------------------------------------------------------------- AdaBN


def test_adabn_changes_only_batchnorm_running_statistics():
    backbone = load_backbone("tiny-cnn", False)
    backbone.replace_head(2)
    model = backbone.model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    shifted = [(torch.rand(8, 3, 32, 32, generator=generator) * 3 + 2, torch.zeros(8)) for _ in range(3)]
    first_input = []
    bn = next(m for m in model.modules() if isinstance(m, batchnorm_types()))
    hook = bn.register_forward_pre_hook(lambda m, args: first_input.append(args[0].detach()))
    layers = adapt_batchnorm(model, shifted, torch.device("cpu"))
    hook.remove()
    after = model.state_dict()
    assert layers == sum(isinstance(m, batchnorm_types()) for m in model.modules()) > 0
    stats = {k for k in after if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert all(not torch.equal(after[k], before[k]) for k in stats if k.endswith("running_mean"))
    assert all(torch.equal(after[k], before[k]) for k in after if k not in stats)  # weights, biases: untouched
    # momentum None: the running mean is the plain average of the batch means
    batch_means = torch.stack([x.mean(dim=(0, 2, 3)) for x in first_input])
    assert torch.allclose(bn.running_mean, batch_means.mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # restored


# ---------------------------------------------------------------- through the CLI and the loop


@pytest.fixture(scope="module")
def shift(tmp_path_factory):
    """Source images, and target images of the same two colours in another noise (a shifted domain)."""
    root = tmp_path_factory.mktemp("shift")
    return write_image_folder(root / "source"), write_image_folder(root / "target", per_class=6, seed=1)


def test_a_dann_run_scores_the_target_and_keeps_the_domain_classifier_out_of_the_model(shift, tmp_path, capsys):
    source, target = shift
    out = tmp_path / "run"
    argv = ["train", "--model", "tiny-cnn", "--strategy", "full", "--data", str(source), "--out", str(out)]
    argv += ["--epochs", "2", "--target-data", str(target), "--adapt", "dann", "--test-data", str(target)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "domain adaptation: dann on 12 unlabelled target examples" in err
    last = next(line for line in err.splitlines() if line.startswith("best val"))
    assert "test accuracy" in last and "(target domain, after dann; val is the source domain)" in last
    summary = json.loads((out / "summary.json").read_text())
    adaptation = summary["domain_adaptation"]
    assert adaptation["method"] == "dann" and adaptation["scored_domain"] == "target"
    assert adaptation["target_examples"] == 12 and 0 <= adaptation["domain_accuracy"] <= 1
    assert summary["scored_on"] == "test" and summary["test_examples"] == 12
    tensors, _ = load_tensors(out / "model.safetensors")
    assert all(k.startswith(("blocks.", "head.")) for k in tensors)  # no domain classifier in the model
    loaded = load_run(out)  # predict and export build the model as for any run
    assert loaded.plan.backbone.num_outputs == 2


@pytest.mark.parametrize("kind, strategy", [("image", "full"), ("text", "retrain:2")])
def test_resume_of_a_dann_run_ends_like_an_uninterrupted_run(shift, tmp_path, monkeypatch, kind, strategy):
    if kind == "image":
        data, target, model = shift[0], shift[1], "tiny-cnn"
    else:  # retrain:2 caches the frozen prefix's output for the target texts too
        data, model = write_text_tsv(tmp_path / "source.tsv"), "tiny-bert"
        target = tmp_path / "target.txt"
        target.write_text("a really good story\nawful awful acting\nthe plot was fine\nboring film , bad\n")
    settings = dict(model=model, strategy=strategy, epochs=3, target_data=str(target), adapt="dann")
    straight = train(config(data, tmp_path / "straight", **settings))
    assert straight["cached_blocks"] == (2 if kind == "text" else 0)

    real_epoch = epoch_module._train_epoch

    def interrupted(*args, **kwargs):
        if args[-2] == 2:  # the epoch index: stop while the third epoch runs
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config(data, tmp_path / "resumed", **settings))
    latest = tmp_path / "resumed" / "checkpoint" / (tmp_path / "resumed" / "checkpoint" / "latest").read_text()
    assert set(load_tensors(latest / "beside.safetensors")[0]) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
    resumed = train(config(data, tmp_path / "resumed", resume=True, **settings))

    def lines(run: str) -> list[dict]:
        text = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in text]

    assert lines("resumed") == lines("straight")
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["domain_adaptation"] == straight["domain_adaptation"]


def test_target_labels_are_never_read(tmp_path, capsys):
    data = write_text_tsv(tmp_path / "source.tsv")
    rows = ["good film", "awful plot", "fun story", "bad acting", "great fun", "boring story"]
    first = tmp_path / "a" / "target.tsv"
    second = tmp_path / "b" / "target.tsv"
    for path, labels in ((first, "101010"), (second, "110100")):  # the same texts, other labels
        path.parent.mkdir()
        path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(rows, labels)))
    models = []
    for name, target in (("a", first), ("b", second)):
        settings = dict(model="tiny-bert", epochs=2, target_data=str(target), adapt="dann")
        train(config(data, tmp_path / f"run-{name}", **settings))
        models.append(load_tensors(tmp_path / f"run-{name}" / "model.safetensors")[0])
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    err = capsys.readouterr().err
    warning = "the labels in column 'label' are ignored"
    assert err.count(warning) == 2  # once per run


def test_an_adabn_run_saves_the_target_statistics_that_predict_loads(shift, tmp_path):
    source, target = shift
    out = tmp_path / "run"
    summary = train(config(source, out, strategy="none", epochs=1, target_data=str(target), adapt="adabn"))
    assert summary["domain_adaptation"]["batchnorm_layers"] > 0
    assert summary["domain_adaptation"]["scored_domain"] == "source"  # no --test-data
    loaded = load_run(out).plan.backbone
    fresh = load_run(out).plan.backbone  # the same run, its statistics re-estimated here by hand
    examples = read_unlabelled(target, "image").as_examples(("blue", "red"))
    dataset = example_dataset(examples, fresh, False, False)
    adapt_batchnorm(fresh.model, make_loader(dataset, 8, collate_for(fresh, None), 0), torch.device("cpu"))
    a, b = loaded.model.state_dict(), fresh.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    zoo = load_backbone("tiny-cnn", False).model.state_dict()
    assert not torch.equal(a["blocks.0.1.running_mean"], zoo["blocks.0.1.running_mean"])  # frozen, yet adapted


def test_unlabelled_readers(tmp_path):
    folder = write_image_folder(tmp_path / "tree", per_class=2)
    tree = read_unlabelled(folder, "image")
    assert len(tree) == 4 and all(isinstance(p, Path) for p in tree.inputs) and "subfolders" in tree.notes[0]
    plain = tmp_path / "lines.txt"
    plain.write_text("one text\n\nanother text\r\n")
    assert read_unlabelled(plain, "text").inputs == ["one text", "another text"]
    header = tmp_path / "header.txt"
    header.write_text("text\tsource\nfirst\tweb\nsecond\tnews\n")
    table = read_unlabelled(header, "text")
    assert table.inputs == ["first", "second"] and table.notes == ()
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "x y", "label": 1}\n{"text": "z", "label": 0}\n')
    labelled = read_unlabelled(jsonl, "text")
    assert labelled.inputs == ["x y", "z"] and "ignored" in labelled.notes[0]
    assert labelled.as_examples(("0", "1")).labels == [0, 0]
