"""Every strategy trains on every BERT task through the one loop; eval, predict and bad input through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from task_fixtures import write_conll, write_semeval
from train_fixtures import write_text_tsv
from tunelab.cli import main
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.loop import seed_everything, train
from tunelab.runs.prepare import prepare
from tunelab.settings import TrainConfig
from tunelab.strategies import REGISTRY
from tunelab.tasks import REGISTRY as TASKS

SPECS = list(REGISTRY)
"""Every registered strategy at its default settings."""
TEXT_TASKS = [name for name, entry in TASKS.items() if entry.modality == "text"]
"""Every registered text task (the `data` fixture writes a file for each)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return {
        "token-classification": write_conll(root / "ner.txt"),
        "relation-classification": write_semeval(root / "relations.txt"),
        "text-classification": write_text_tsv(root / "reviews.tsv"),
    }


@pytest.mark.parametrize("task", TEXT_TASKS)
@pytest.mark.parametrize("spec", SPECS)
def test_every_strategy_trains_on_every_task(data, tmp_path, task, spec):
    adversarial = "fgm" if task == "text-classification" else None  # sentence classification is the adversarial task
    config = TrainConfig(
        model="tiny-bert",
        strategy=spec,
        data=str(data[task]),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=4,
        lr=1e-2,
        val_fraction=0.25,
        adversarial=adversarial,
    )
    summary = train(config)
    metric = {"token-classification": "entity_f1", "relation-classification": "official_f1"}.get(task, "accuracy")
    assert summary["task"] == task and summary["metric"] == metric and 0.0 <= summary["score"] <= 1.0
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert f"val_{metric}" in record

    seed_everything(0)
    initial = prepare("tiny-bert", spec, len(summary["classes"]), task=task)
    trainable = {n: p for n, p in initial.backbone.model.named_parameters() if p.requires_grad}
    saved, _ = load_tensors(tmp_path / "run" / "model.safetensors")
    # exactly what the strategy (and task) trains is stored
    assert {n for n in saved if n in trainable} == set(trainable)
    moved = [n for n in trainable if not torch.equal(saved[n], trainable[n].detach())]
    assert any(n.startswith("head.") for n in moved)
    if task == "relation-classification":
        assert "blocks.0.embeddings.word_embeddings.extra" in moved  # the marker embeddings trained too


def test_ner_eval_and_predict_show_entities_with_character_spans(data, tmp_path, capsys):
    run = tmp_path / "ner"
    assert (
        main(
            [
                "train",
                "--model",
                "tiny-bert",
                "--strategy",
                "full",
                "--data",
                str(data["token-classification"]),
                "--out",
                str(run),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--lr",
                "1e-2",
                "--val-fraction",
                "0.25",
            ]
        )
        == 0
    )
    assert main(["eval", "--run", str(run), "--data", str(data["token-classification"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"entity_f1", "precision", "recall", "per_type"} <= set(report) and report["sentences"] == 12
    line = "john  visited paris and acme corp"
    assert main(["predict", "--run", str(run), line, "--json"]) == 0
    [prediction] = json.loads(capsys.readouterr().out)
    assert prediction["input"] == line
    for entity in prediction["entities"]:
        assert line[entity["start"] : entity["end"]] == entity["text"] and entity["type"] in {"PER", "LOC", "ORG"}
        assert entity["text"] == entity["text"].strip() and entity["text"]


def test_relation_eval_and_predict(data, tmp_path, capsys):
    run = tmp_path / "rel"
    assert (
        main(
            [
                "train",
                "--model",
                "tiny-bert",
                "--strategy",
                "none",
                "--data",
                str(data["relation-classification"]),
                "--val-data",
                str(data["relation-classification"]),
                "--out",
                str(run),
                "--epochs",
                "1",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    assert main(["eval", "--run", str(run), "--data", str(data["relation-classification"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("official macro-F1") and "2 relation types, directed, without Other" in out
    assert main(["predict", "--run", str(run), "the <e1>actor</e1> saw the <e2>film</e2>", "--top-k", "2"]) == 0
    text, labels = capsys.readouterr().out.rstrip("\n").split("\t")
    assert text == "the <e1>actor</e1> saw the <e2>film</e2>" and len(labels.split("  ")) == 2


BAD = {
    "conll-columns": ("ner.txt", "john X X B-PER\nparis X B-LOC\n", 2, "expected 4 columns"),
    "conll-tag": ("ner.txt", "john X X B-PER\nparis X X LOCATION\n", 2, "not in the IOB/BIO scheme"),
    "relation-entity": ("rel.txt", '1\t"<e1>john</e1> went home"\nOther\nComment:\n', 1, "missing an entity"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_task_files_exit_2_with_file_and_line(tmp_path, capsys, case):
    name, content, line, problem = BAD[case]
    path = tmp_path / name
    path.write_text(content)
    task = "token-classification" if name == "ner.txt" else "relation-classification"
    argv = ["train", "--model", "tiny-bert", "--task", task, "--data", str(path), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err and problem in err and err.count("\n") == 1


@pytest.mark.parametrize("task", ["token-classification", "relation-classification"])
def test_a_validation_label_unseen_in_training_exits_2_at_its_line(data, tmp_path, capsys, task):
    val = tmp_path / "val.txt"
    if task == "token-classification":
        val.write_text("john X X B-PER\nfilm X X B-MISC\n")
        line = 2
    else:
        val.write_text('1\t"<e1>a</e1> <e2>b</e2>"\nCause-Effect(e1,e2)\nComment:\n')
        line = 2
    argv = ["train", "--model", "tiny-bert", "--data", str(data[task]), "--val-data", str(val)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{val}:{line}:" in err and "not seen in training" in err


def test_adversarial_settings_are_checked_where_they_enter(data, tmp_path, capsys):
    base = ["train", "--model", "tiny-bert", "--data", str(data["text-classification"]), "--out", str(tmp_path / "run")]
    assert main([*base, "--adversarial", "fsgm"]) == 2
    assert "adversarial must be one of fgm, pgd" in capsys.readouterr().err
    assert main([*base, "--adversarial", "pgd", "--adv-steps", "0"]) == 2
    assert "adv_steps must be at least 1" in capsys.readouterr().err


def test_the_task_is_inferred_from_the_data_format(data, tmp_path):
    from tunelab.tasks import infer_task

    assert infer_task(str(data["token-classification"])) == "token-classification"
    assert infer_task(str(data["relation-classification"])) == "relation-classification"
    assert infer_task(str(data["text-classification"])) == "text-classification"
    jsonl = tmp_path / "rel.jsonl"
    jsonl.write_text('{"text": "a b", "head": [0, 1], "tail": [2, 3], "label": "x"}\n')
    assert infer_task(str(jsonl)) == "relation-classification"
    table = tmp_path / "t.jsonl"
    table.write_text('{"text": "a b", "label": "x"}\n')
    assert infer_task(str(table)) == "text-classification"
