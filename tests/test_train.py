"""Training end to end on tiny models and data: learning, run directories, cache, resume, eval, predict, CLI."""

from __future__ import annotations

import json

import pytest
import torch

import tunelab.runs.epoch as epoch_module
from tunelab.cli import main
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.evaluate import evaluate, predict
from tunelab.runs.loop import train
from tunelab.settings import TrainConfig


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(model="tiny-cnn", strategy="full", epochs=3, batch_size=8, lr=1e-2, seed=0, val_fraction=0.25)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def test_loss_falls_and_the_run_directory_is_complete(images, tmp_path):
    summary = train(config(images, tmp_path / "run", epochs=10, batch_size=4, lr=3e-3))
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.jsonl", "model.safetensors", "summary.json"}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 11))
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert set(metrics[0]) >= {"train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    for key in (
        "model",
        "strategy",
        "task",
        "metric",
        "score",
        "trainable_params",
        "total_params",
        "epochs",
        "best_epoch",
        "train_seconds",
        "peak_memory_mb",
        "checkpoint_bytes",
    ):
        assert key in summary, key
    assert summary["task"] == "image-classification" and summary["score"] >= 0.8
    assert json.loads((run / "summary.json").read_text())["score"] == summary["score"]


def test_checkpoints_hold_only_what_the_strategy_trained(images, tmp_path):
    full = train(config(images, tmp_path / "full", epochs=1))
    none = train(config(images, tmp_path / "none", strategy="none", epochs=1))
    tensors, meta = load_tensors(tmp_path / "none" / "model.safetensors")
    assert set(tensors) == {"head.3.weight", "head.3.bias"}
    assert json.loads(meta["classes"]) == ["blue", "red"]
    assert none["checkpoint_bytes"] < full["checkpoint_bytes"] / 5


@pytest.mark.parametrize(
    "kind, strategy", [("image", "none"), ("image", "retrain:2"), ("text", "retrain:2"), ("text", "none")]
)
def test_cached_and_uncached_runs_give_the_same_metrics(images, text, tmp_path, kind, strategy):
    data, model = (images, "tiny-cnn") if kind == "image" else (text, "tiny-bert")
    cached = train(config(data, tmp_path / "cached", model=model, strategy=strategy, augment=False))
    plain = train(config(data, tmp_path / "plain", model=model, strategy=strategy, augment=False, cache=False))
    assert cached["cached_blocks"] > 0 and plain["cached_blocks"] == 0
    a = [json.loads(x) for x in (tmp_path / "cached" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert [m["val_accuracy"] for m in a] == [m["val_accuracy"] for m in b]
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4, abs=1e-6)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4, abs=1e-6)


def test_the_cache_spills_to_disk_past_its_memory_budget(images, tmp_path):
    in_memory = train(config(images, tmp_path / "mem", strategy="none", epochs=2))
    on_disk = train(config(images, tmp_path / "disk", strategy="none", epochs=2, cache_memory_mb=0))
    assert on_disk["score"] == in_memory["score"]
    assert not (tmp_path / "disk" / "cache").exists()  # spill files are removed when the run ends


@pytest.mark.parametrize("kind, strategy", [("image", "full"), ("text", "lora:2")])
def test_resume_after_an_interrupt_ends_like_an_uninterrupted_run(images, text, tmp_path, monkeypatch, kind, strategy):
    data, model = (images, "tiny-cnn") if kind == "image" else (text, "tiny-bert")
    settings = dict(model=model, strategy=strategy, epochs=4)
    train(config(data, tmp_path / "straight", **settings))

    real_epoch = epoch_module._train_epoch

    def interrupted(*args, **kwargs):
        if args[-2] == 2:  # the epoch index: stop while the third epoch runs
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config(data, tmp_path / "resumed", **settings))
    assert not (tmp_path / "resumed" / "summary.json").exists()
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
    train(config(data, tmp_path / "resumed", resume=True, **settings))

    straight = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    drop_time = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]  # noqa: E731
    assert drop_time(resumed) == drop_time(straight)
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_existing_run_is_never_overwritten(images, tmp_path):
    train(config(images, tmp_path / "run", epochs=1))
    with pytest.raises(Exception, match="already holds a finished run"):
        train(config(images, tmp_path / "run", epochs=1))


def test_eval_and_predict_on_a_saved_run(images, text, tmp_path):
    train(config(images, tmp_path / "img", epochs=10, batch_size=4, lr=3e-3))
    report = evaluate(tmp_path / "img", images)
    assert report.n == 24 and report.classes == ("blue", "red") and report.accuracy >= 0.8
    image = next((images / "red").iterdir())
    [prediction] = predict(tmp_path / "img", [str(image)], k=2)
    assert prediction.labels[0][0] == "red" and sum(p for _, p in prediction.labels) == pytest.approx(1.0, abs=1e-5)

    train(config(text, tmp_path / "txt", model="tiny-bert", strategy="full", epochs=4))
    out = predict(tmp_path / "txt", ["great fun", "awful boring plot"], k=1)
    assert [p.labels[0][0] for p in out] in (["1", "0"], ["0", "1"], ["1", "1"], ["0", "0"])  # a label from training
    assert evaluate(tmp_path / "txt", text).n == 42


def test_cli_train_eval_predict_with_a_config_file(images, tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"model: tiny-cnn\nstrategy: none\ndata: {images}\nepochs: 3\nbatch_size: 8\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["strategy"] == "none"  # flag beat file; file beat default
    assert "epochs: 1" in (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--data", str(images), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 24
    image = next((images / "blue").iterdir())
    assert main(["predict", "--run", str(out), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["input"] == str(image)


def test_config_file_errors_are_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: tiny-cnn\nepochz: 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown key 'epochz'" in capsys.readouterr().err
    cfg.write_text("model: tiny-cnn\nepochs: three\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "epochs" in capsys.readouterr().err
