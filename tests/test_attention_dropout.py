"""--attention-dropout: text runs train without dropout on attention weights unless told, and say so.

At 0 torch's fused attention kernel runs in training (on a CPU it has no kernel for dropout on attention
weights); the benchmark that made 0 the default is in benchmarks/README.md. Here: what resolves to what,
that the value reaches the layers, that config.yaml records it, and that a run saved before the setting
existed is taken for what it trained with (the checkpoint's own dropout), not for a run at today's default.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import tunelab.runs.epoch as epoch_module
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.runs.identity import check_reuse, resolve_settings
from tunelab.runs.job import load_job
from tunelab.runs.loop import train
from tunelab.settings import TrainConfig, from_yaml_file


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "text": write_text_tsv(root / "reviews.tsv", repeats=2),
        "image": write_image_folder(root / "img", per_class=8),
    }


def text_config(data, **kw) -> TrainConfig:
    return TrainConfig(model="tiny-bert", strategy="full", data=str(data["text"]), epochs=1, batch_size=8, **kw)


def test_unset_is_zero_for_text_none_for_images_and_a_given_value_is_kept(data):
    assert resolve_settings(text_config(data)).attention_dropout == 0.0
    assert resolve_settings(text_config(data, attention_dropout=0.1)).attention_dropout == 0.1
    image = TrainConfig(model="tiny-cnn", strategy="full", data=str(data["image"]))
    assert resolve_settings(image).attention_dropout is None  # nothing to set: config.yaml says none


@pytest.mark.parametrize("given, expected", [(None, 0.0), (0.1, 0.1), (0.3, 0.3)])
def test_the_resolved_value_reaches_every_layer(data, given, expected):
    job = load_job(text_config(data, attention_dropout=given))
    backbone = job.plan.backbone
    assert backbone.attention_dropout == 0.1  # the checkpoint's own, kept for runs older than the setting
    assert len(backbone.attention_dropouts) == len(backbone.blocks) - 1  # one per encoder layer
    assert [d.p for d in backbone.attention_dropouts] == [expected] * len(backbone.attention_dropouts)
    assert job.config.attention_dropout == expected


def test_at_zero_training_attention_is_exactly_evaluation_attention(data):
    """With hidden dropout off too, a layer in training mode computes what it computes in evaluation at 0,
    and something else at 0.1: the setting is what the attention kernel is given, not a label."""
    job = load_job(text_config(data))
    layer = job.plan.backbone.blocks[1].layer
    for module in layer.modules():  # hidden-state dropout off: only the attention weights' dropout is left
        if isinstance(module, torch.nn.Dropout) and module not in job.plan.backbone.attention_dropouts:
            module.p = 0.0
    hidden, mask = torch.randn(3, 7, 32), torch.ones(3, 1, 7, 7, dtype=torch.bool)
    layer.eval()
    expected = layer(hidden, attention_mask=mask)
    layer.train()
    assert torch.equal(layer(hidden, attention_mask=mask), expected)
    for dropout in job.plan.backbone.attention_dropouts:
        dropout.p = 0.1
    torch.manual_seed(0)
    assert not torch.allclose(layer(hidden, attention_mask=mask), expected)


def test_config_yaml_records_it_and_an_image_run_warns_when_given_one(data, tmp_path, capsys):
    train(text_config(data, out=str(tmp_path / "text")))
    assert from_yaml_file(TrainConfig, tmp_path / "text" / "config.yaml").attention_dropout == 0.0
    args = ["train", "--model", "tiny-cnn", "--data", str(data["image"]), "--out", str(tmp_path / "image")]
    assert main([*args, "--epochs", "1", "--batch-size", "8", "--attention-dropout", "0.1"]) == 0
    assert "attention_dropout is not applied: tiny-cnn has none" in capsys.readouterr().err


def test_a_value_outside_zero_to_one_is_refused_in_one_line(data, tmp_path, capsys):
    args = ["train", "--model", "tiny-bert", "--data", str(data["text"]), "--out", str(tmp_path / "run")]
    assert main([*args, "--attention-dropout", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "attention" in err[0] and "1.5" in err[0]
    assert not (tmp_path / "run").exists()


def without_the_setting(run: Path) -> None:
    """Make `run` look written before --attention-dropout existed: its config.yaml never names it."""
    config = run / "config.yaml"
    lines = config.read_text().splitlines(keepends=True)
    kept = [line for line in lines if "attention_dropout" not in line and "attention weights" not in line]
    assert len(kept) < len(lines)
    config.write_text("".join(kept))


def test_an_older_run_is_reused_only_as_what_it_trained_with(data, tmp_path):
    old = text_config(data, out=str(tmp_path / "old"), attention_dropout=0.1)
    train(old)
    without_the_setting(tmp_path / "old")
    assert check_reuse([old], rerun=False) == []  # trained at the checkpoint's 0.1: the same run
    with pytest.raises(Exception, match=r"attention_dropout \(0.1 -> 0.0\)"):
        check_reuse([replace(old, attention_dropout=None)], rerun=False)  # today's default is another run


def test_an_older_run_resumes_only_with_the_dropout_it_trained_with(data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = ["train", "--model", "tiny-bert", "--data", str(data["text"]), "--out", str(run), "--batch-size", "8"]
    real_epoch = epoch_module._train_epoch

    def stop_at_the_second_epoch(*a, **kw):
        if a[-2] == 1:
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(epoch_module, "_train_epoch", stop_at_the_second_epoch)
        assert main([*args, "--epochs", "2", "--attention-dropout", "0.1"]) == 2  # interrupted after epoch 1
    without_the_setting(run)
    assert main([*args, "--epochs", "2", "--resume"]) == 2
    assert "attention_dropout (0.1 -> 0.0)" in capsys.readouterr().err
    assert main([*args, "--epochs", "2", "--resume", "--attention-dropout", "0.1"]) == 0
    assert from_yaml_file(TrainConfig, run / "config.yaml").attention_dropout == 0.1
