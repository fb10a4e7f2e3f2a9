"""Domain adaptation (--adapt dann|adabn): the gradient reversal, DANN's step on a shifted task, AdaBN's
statistics, resume, target labels never read, and DANN for token classification (news -> tweets NER)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import tunelab.runs.epoch as epoch_module
from task_fixtures import write_conll
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.data.examples import Examples
from tunelab.data.unlabelled import Unlabelled, read_unlabelled
from tunelab.models.contract import TransferModel
from tunelab.models.zoo import load_backbone
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.domain import (
    Dann,
    DomainClassifier,
    PairedCollate,
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
from tunelab.tasks import get_task
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
            domain, *_ = domain_loss(critic, f, 3, reversal)
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


@pytest.mark.parametrize("kind, strategy", [("image", "full"), ("text", "retrain:2"), ("token", "retrain:2")])
def test_resume_of_a_dann_run_ends_like_an_uninterrupted_run(shift, tmp_path, monkeypatch, kind, strategy):
    if kind == "image":
        data, target, model = shift[0], shift[1], "tiny-cnn"
    elif kind == "text":  # retrain:2 caches the frozen prefix's output for the target texts too
        data, model = write_text_tsv(tmp_path / "source.tsv"), "tiny-bert"
        target = tmp_path / "target.txt"
        target.write_text("a really good story\nawful awful acting\nthe plot was fine\nboring film , bad\n")
    else:  # NER: cached per-token states of source and target sentences, the target one sentence per line
        data, model = write_conll(tmp_path / "news.conll", repeats=3), "tiny-bert"
        target = _write_tweets(tmp_path / "tweets.txt", conll=False)
    settings = dict(model=model, strategy=strategy, epochs=3, target_data=str(target), adapt="dann")
    straight = train(config(data, tmp_path / "straight", **settings))
    assert straight["cached_blocks"] == (0 if kind == "image" else 2)

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


# ---------------------------------------------------------------- token classification: a domain label per token


TWEETS = [
    ("@john at #paris lol", "B-PER O B-LOC O"),
    ("omg acme corp rocks !!", "O B-ORG I-ORG O O"),
    ("london vibes #sunday", "B-LOC O O"),
    ("rt john luvs acme corp", "O B-PER O B-ORG I-ORG"),
]
"""The target domain of the NER tests: the source's entities (task_fixtures' news sentences) in tweets."""


TAGS = ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")
"""The tag set of task_fixtures' NER sentences, in `data.conll.tag_order`."""


def _write_tweets(path: Path, conll: bool = True, repeats: int = 2) -> Path:
    """The tweets as a WNUT-style CoNLL file (token TAB tag, blank line between tweets) or one per line."""
    if conll:
        blocks = ["".join(f"{w}\t{t}\n" for w, t in zip(words.split(), tags.split())) for words, tags in TWEETS]
        path.write_text("\n".join(blocks * repeats))
    else:
        path.write_text("".join(f"{words}\n" for words, _ in TWEETS * repeats))
    return path


def test_a_token_classification_dann_run_trains_and_writes_its_run(tmp_path, capsys):
    news, tweets = write_conll(tmp_path / "news.conll", repeats=3), _write_tweets(tmp_path / "tweets.conll")
    out = tmp_path / "run"
    argv = ["train", "--model", "tiny-bert", "--strategy", "full", "--data", str(news), "--out", str(out)]
    argv += ["--epochs", "2", "--target-data", str(tweets), "--adapt", "dann", "--test-data", str(tweets)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "dann on 8 unlabelled target sentences" in err and "reading every real token" in err
    assert "only the token column is read; the other columns (the tags) are ignored" in err
    last = next(line for line in err.splitlines() if line.startswith("best val"))
    assert "test entity_f1" in last and "(target domain, after dann; val is the source domain)" in last
    summary = json.loads((out / "summary.json").read_text())
    adaptation = summary["domain_adaptation"]
    assert adaptation["method"] == "dann" and adaptation["target_examples"] == 8
    assert adaptation["domain_epoch"] == 2 and 0 <= adaptation["domain_accuracy"] <= 1
    assert math.isfinite(adaptation["domain_loss"])
    assert summary["task"] == "token-classification" and summary["test_examples"] == 8
    tensors, _ = load_tensors(out / "model.safetensors")
    assert all(k.startswith(("blocks.", "head.")) for k in tensors)  # no domain classifier in the model
    assert load_run(out).plan.backbone.num_outputs == 7  # O + B-/I- of LOC, ORG, PER


def test_padding_is_no_row_of_the_domain_loss():
    torch.manual_seed(0)
    critic = DomainClassifier(4, hidden=6)
    features = torch.randn(3, 5, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])  # row 0 source, rows 1-2 target
    loss, correct, rows = domain_loss(critic.eval(), features, 1, 0.5, mask)
    loss.backward()
    assert rows == 10
    assert not features.grad[mask == 0].any()  # padding: no gradient at all
    assert features.grad[mask == 1].abs().sum(-1).gt(0).all()  # every real token: its reversed gradient
    real = features.detach()[mask.bool()]  # the same rows by hand: the mean over the 10 real tokens
    domains = torch.tensor([0.0] * 3 + [1.0] * 7)
    by_hand = nn.functional.binary_cross_entropy_with_logits(critic(real).squeeze(-1), domains)
    assert torch.allclose(loss, by_hand)
    garbage = features.detach().clone()
    garbage[mask == 0] = 1e6  # whatever sits in the padding
    assert torch.equal(domain_loss(critic, garbage, 1, 0.5, mask)[0], loss.detach())


def test_the_reversed_gradient_reaches_the_real_tokens_of_a_tagging_model_and_never_its_padding(tmp_path):
    """One DANN step of a tiny BERT tagger on a padded batch: a short news sentence, then a longer tweet."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    backbone = load_backbone("tiny-bert", False)
    task = get_task("token-classification")
    task.adapt(backbone, len(TAGS))
    news = Examples([["john", "visited", "paris"]], [[5, 0, 1]], TAGS, "news")  # B-PER O B-LOC
    tweets = read_unlabelled(_write_tweets(tmp_path / "tweets.txt", conll=False), "text", words=True)
    source = example_dataset(news, backbone, False, False, task.name, None)
    target = example_dataset(tweets.as_examples(TAGS), backbone, False, False, task.name, None)
    inputs, labels = PairedCollate(collate_for(backbone, None, task.name))([(source[0], target[1])])
    mask = inputs["attention_mask"]
    assert labels.shape[0] == 1 and mask[0].sum() < mask.shape[1] and mask[1].all()  # the news row is padded
    kept = []

    def keep(module, args, out):  # the last block's hidden states: what the token head (and the tap) reads
        out.hidden.retain_grad()
        kept.append(out.hidden)

    hook = backbone.model.blocks[-1].register_forward_hook(keep)
    dann = Dann(backbone, SimpleNamespace(seed=0, adapt_weight=1.0, epochs=1), "cpu")
    step = SimpleNamespace(
        accelerator=Accelerator(cpu=True),
        model=backbone.model.eval(),
        start=0,
        loss=task_loss,
        loader=range(4),
        accumulation=1,
        scheduler=SimpleNamespace(last_epoch=2),  # half way through: the reversal weight is well above 0
    )
    dann.backward(step, inputs, labels, None, 1.0, True)
    hook.remove()
    grad = kept[0].grad
    assert not grad[mask == 0].any()  # the news row's padding: nothing from either loss
    assert grad[1].abs().sum(-1).gt(0).all()  # every token of the tweet: only the reversed domain loss reaches it
    assert dann.last_epoch["rows"] == int(mask.sum())  # one domain row per real token


@pytest.mark.parametrize(
    "write, error",
    [
        (lambda p: p.write_text(""), r"tweets\.txt: file is empty; expected a CoNLL file \(one token per line\)"),
        (lambda p: p.write_bytes(b"caf\xe9 au lait\n"), r"tweets\.txt:1: bytes b'\\xe9' are not UTF-8"),
        (lambda p: p.write_text("-DOCSTART- -X- O\n\n"), r"tweets\.txt: no sentences: expected one token per line"),
        (lambda p: p.mkdir(), r"tweets\.txt is a folder, but the task tags words: give a CoNLL file"),
    ],
    ids=["empty", "not-utf8", "no-sentences", "a-folder"],
)
def test_a_bad_ner_target_is_one_line(tmp_path, capsys, write, error):
    target = tmp_path / "tweets.txt"
    write(target)
    news = write_conll(tmp_path / "news.conll")
    argv = ["train", "--model", "tiny-bert", "--strategy", "full", "--data", str(news), "--out", str(tmp_path / "run")]
    assert main([*argv, "--target-data", str(target), "--adapt", "dann"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunelab: error: ") and re.search(error, lines[0]), lines
    assert not (tmp_path / "run").exists()


def test_ner_targets_are_read_as_words_without_their_tags(tmp_path):
    conll = read_unlabelled(_write_tweets(tmp_path / "tweets.conll"), "text", words=True)
    assert conll.inputs[:2] == [["@john", "at", "#paris", "lol"], ["omg", "acme", "corp", "rocks", "!!"]]
    assert len(conll) == 8 and "the other columns (the tags) are ignored" in conll.notes[0]
    assert conll.as_examples(TAGS).labels[0] == [0, 0, 0, 0]  # a placeholder per word, never read
    untagged = tmp_path / "tokens.conll"  # one token per line, no tag column: nothing to ignore
    untagged.write_text("-DOCSTART-\n\nrt\njohn\n\nlol\n")
    assert read_unlabelled(untagged, "text", words=True) == Unlabelled([["rt", "john"], ["lol"]], str(untagged))
    lines = read_unlabelled(_write_tweets(tmp_path / "tweets.txt", conll=False), "text", words=True)
    assert lines.inputs == conll.inputs and lines.notes == ()  # one sentence per line, split on whitespace
    table = tmp_path / "tweets.tsv"
    table.write_text("text\tlabel\n@john  at #paris\t1\n\t0\nlol\t0\n")
    read = read_unlabelled(table, "text", words=True)
    assert read.inputs == [["@john", "at", "#paris"], ["lol"]] and "ignored" in read.notes[0]
