"""tunelab export: ONNX files whose onnxruntime logits match PyTorch's, with classes and preprocessing inside."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import SENTENCES
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.onnx_export import export
from tunelab.runs.loop import train
from tunelab.runs.trained import load_run
from tunelab.settings import TrainConfig

onnx = pytest.importorskip("onnx", reason="ONNX export needs the [export] extra")
ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the [export] extra")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs whose exports must include what their strategy added: LoRA (merged) and adapters."""
    root = tmp_path_factory.mktemp("runs")
    images = write_image_folder(root / "images", per_class=6)
    text = write_text_tsv(root / "reviews.tsv", repeats=1)
    out = {}
    for name, model, strategy, data in [
        ("cnn-lora", "tiny-cnn", "lora:2", images),
        ("cnn-adapter", "tiny-cnn", "adapter", images),
        ("bert-lora", "tiny-bert", "lora:2", text),
        ("bert-adapter", "tiny-bert", "adapter", text),
    ]:
        out[name] = root / name
        # a high lr so LoRA and adapters move away from their zero init and the parity test sees them
        train(
            TrainConfig(
                model=model,
                strategy=strategy,
                data=str(data),
                out=str(out[name]),
                epochs=2,
                batch_size=4,
                lr=5e-2,
                val_fraction=0.3,
            )
        )
    return out


def pytorch_logits(run_dir, inputs) -> np.ndarray:
    model = load_run(run_dir).plan.backbone.model.eval()  # LoRA not merged: the model as trained
    with torch.no_grad():
        return model(inputs).numpy()


@pytest.mark.parametrize("name", ["cnn-lora", "cnn-adapter", "bert-lora", "bert-adapter"])
def test_onnxruntime_matches_pytorch(runs, tmp_path, name):
    path = export(runs[name], tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    run = load_run(runs[name])
    if name.startswith("cnn"):
        pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # another batch size than traced
        feeds, reference = {"pixel_values": pixels.numpy()}, pytorch_logits(runs[name], pixels)
        assert [i.name for i in session.get_inputs()] == ["pixel_values"]
    else:
        batch = dict(run.plan.backbone.input.tokenizer(SENTENCES[:3], padding=True, return_tensors="pt"))
        feeds = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
        reference = pytorch_logits(runs[name], batch)
    (logits,) = session.run(["logits"], feeds)
    assert logits.shape == (3, len(run.classes))
    np.testing.assert_allclose(logits, reference, atol=1e-4)
    assert np.abs(reference).max() > 1e-3  # a real comparison, not of two zero vectors


def test_lora_is_merged_and_the_metadata_says_how_to_use_the_file(runs, tmp_path):
    path = export(runs["cnn-lora"], tmp_path / "m.onnx")
    graph = onnx.load(str(path))
    assert not any("lora" in init.name for init in graph.graph.initializer)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["classes"]) == ["blue", "red"] and meta["strategy"] == "lora:2"
    assert json.loads(meta["preprocessing"]) == {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "size": 32,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
    }


def test_text_export_saves_its_tokenizer(runs, tmp_path):
    assert main(["export", "--run", str(runs["bert-lora"]), "--out", str(tmp_path / "sst.onnx")]) == 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "sst.tokenizer")
    assert (
        tokenizer("good movie")["input_ids"]
        == load_run(runs["bert-lora"]).plan.backbone.input.tokenizer("good movie")["input_ids"]
    )


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("format", "cannot export to 'torchscript'; supported formats: onnx"),
        ("zoo name", "no such run directory"),
        ("incomplete", "incomplete run"),
    ],
)
def test_what_cannot_be_exported_is_one_line_exit_2(runs, tmp_path, capsys, case, fragment):
    run = {"format": runs["cnn-lora"], "zoo name": "tiny-cnn", "incomplete": tmp_path / "half"}[case]
    if case == "incomplete":
        run.mkdir()
        (run / "config.yaml").write_text((runs["cnn-lora"] / "config.yaml").read_text())
    fmt = "torchscript" if case == "format" else "onnx"
    code = main(["export", "--run", str(run), "--format", fmt, "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0]
    assert not (tmp_path / "m.onnx").exists()
