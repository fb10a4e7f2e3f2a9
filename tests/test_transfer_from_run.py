"""A run directory is a model: transfer from an earlier run (LoRA merged, adapters kept, its preprocessing)."""

from __future__ import annotations

import pytest
import torch

from conftest import make_batch
from tunelab import load_backbone, prepare
from tunelab.cli import main
from tunelab.runs.evaluate import evaluate
from tunelab.runs.loop import train
from tunelab.runs.trained import load_run
from tunelab.settings import TrainConfig
from tunelab.strategies.layers import Adapted


@pytest.fixture(scope="module")
def source_runs(images, text, tmp_path_factory):
    """Tiny source runs: CNN full / lora / adapter on images, BERT lora with a shorter max length on text."""
    root = tmp_path_factory.mktemp("sources")
    runs = {}
    for name, model, strategy, data, extra in [
        ("cnn-full", "tiny-cnn", "full", images, {}),
        ("cnn-lora", "tiny-cnn", "lora:2", images, {"lr": 3e-2}),
        ("cnn-adapter", "tiny-cnn", "adapter", images, {"lr": 3e-2}),
        ("bert-lora", "tiny-bert", "lora:2", text, {"max_length": 16, "lr": 3e-2}),
    ]:
        out = root / name
        train(
            TrainConfig(
                model=model,
                strategy=strategy,
                data=str(data),
                out=str(out),
                epochs=2,
                batch_size=8,
                seed=0,
                val_fraction=0.25,
                **extra,
            )
        )
        runs[name] = out
    return runs


def logits_of(model, batch):
    model.eval()
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("name", ["cnn-full", "cnn-lora", "cnn-adapter", "bert-lora"])
def test_the_backbone_computes_what_the_source_run_computes(source_runs, name):
    source = load_run(source_runs[name]).plan.backbone
    backbone = load_backbone(str(source_runs[name]))
    batch, _ = make_batch(backbone)
    assert backbone.name == str(source_runs[name]) and backbone.pretrained
    assert torch.allclose(logits_of(backbone.model, batch), logits_of(source.model, batch), atol=1e-5)
    assert not any(".lora_" in n for n, _ in backbone.model.named_parameters())  # LoRA merged into the weights
    assert all(p.requires_grad for p in backbone.model.parameters())  # the next strategy decides what trains


def test_full_source_weights_become_the_new_backbone_and_the_head_is_new(source_runs):
    source = load_run(source_runs["cnn-full"]).plan.backbone
    plan = prepare(str(source_runs["cnn-full"]), "none", 5)
    new_state = plan.backbone.model.state_dict()
    for key, value in source.model.state_dict().items():
        if key.startswith("blocks."):
            assert torch.equal(new_state[key], value), key
    assert plan.backbone.num_outputs == 5 and plan.backbone.head[-1].out_features == 5
    assert [g.name for g in plan.groups] == ["head"]
    pristine = load_backbone("tiny-cnn").model.state_dict()
    assert any(not torch.equal(pristine[k], v) for k, v in new_state.items() if k.startswith("blocks."))


def test_scratch_from_a_run_is_its_architecture_with_random_weights(source_runs):
    trained = load_backbone(str(source_runs["cnn-full"])).model.state_dict()
    plan = prepare(str(source_runs["cnn-full"]), "scratch", 2)
    random = plan.backbone.model.state_dict()
    assert not plan.backbone.pretrained
    assert {k for k in trained if k.startswith("blocks.")} == {k for k in random if k.startswith("blocks.")}
    assert not torch.equal(random["blocks.0.0.weight"], trained["blocks.0.0.weight"])


def test_adapters_stay_in_the_backbone_and_new_strategies_find_their_layers(source_runs):
    path = str(source_runs["cnn-adapter"])
    adapter = prepare(path, "adapter", 2)
    first = adapter.backbone.model.get_submodule(adapter.backbone.adapter_sites[0].path)
    assert isinstance(first, Adapted) and isinstance(first.base, Adapted)  # the new adapter wraps the source's
    assert all(".adapter." in n and not n.endswith(".base.adapter.") for n in adapter.groups[0].names)
    lora = prepare(path, "lora:2", 2)
    assert lora.trainable_params > lora.backbone.head[-1].weight.numel()
    assert all("lora_" in n for n in lora.groups[0].names)
    full = prepare(path, "full", 2)
    assert any(".adapter." in n for g in full.groups for n in g.names)  # source adapters train with their blocks


def test_text_source_keeps_its_tokenizer_and_max_length(source_runs):
    backbone = load_backbone(str(source_runs["bert-lora"]))
    assert backbone.modality == "text" and backbone.input.max_length == 16


def test_train_eval_and_inspect_take_a_run_directory(source_runs, images, tmp_path, capsys):
    source = str(source_runs["cnn-lora"])
    out = tmp_path / "target"
    code = main(
        [
            "train",
            "--model",
            source,
            "--strategy",
            "retrain:2",
            "--data",
            str(images),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--val-fraction",
            "0.25",
        ]
    )
    assert code == 0
    report = evaluate(out, images)
    assert report.to_dict()["accuracy"] >= 0.0 and load_run(out).config.model == source
    assert main(["inspect", "--model", source, "--strategy", "retrain:2", "--num-classes", "3"]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"{source} (torchvision) with retrain:2 -> 3 classes")


def test_an_incomplete_run_directory_is_one_line_exit_2(source_runs, images, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((source_runs["cnn-full"] / "config.yaml").read_text())
    code = main(["train", "--model", str(broken), "--data", str(images), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "incomplete run" in err[0] and str(broken) in err[0]


def test_a_text_run_cannot_be_the_source_for_images(source_runs, images, tmp_path, capsys):
    code = main(
        ["train", "--model", str(source_runs["bert-lora"]), "--data", str(images), "--out", str(tmp_path / "t")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "model for texts but the task is image-classification" in err[-1]
    assert not (tmp_path / "t" / "summary.json").exists()


def test_a_run_of_a_task_tunelab_cannot_transfer_from_is_one_line_exit_2(source_runs, images, tmp_path, capsys):
    import shutil

    other = tmp_path / "audio"
    shutil.copytree(source_runs["cnn-full"], other)
    config = other / "config.yaml"
    config.write_text(config.read_text().replace("task: image-classification", "task: audio-classification"))
    code = main(["train", "--model", str(other), "--data", str(images), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "audio-classification" in err[0]


def test_compare_and_advise_take_a_run_directory(source_runs, images, tmp_path):
    from tunelab.advice.api import advise
    from tunelab.comparison.grid import CompareConfig, compare
    from tunelab.comparison.results import aggregate, collect

    source = str(source_runs["cnn-full"])
    report = compare(
        CompareConfig(
            model=source,
            data=str(images),
            out=str(tmp_path / "cmp"),
            strategies=("none", "scratch"),
            epochs=1,
            batch_size=8,
            val_fraction=0.25,
        )
    )
    results = aggregate(collect([report.parent / "runs"]))
    assert report.is_file() and [r.strategy for r in results] == ["none", "scratch"]
    advice = advise(source, str(images), max_examples=24)
    assert advice.to_dict()["recommendation"]
