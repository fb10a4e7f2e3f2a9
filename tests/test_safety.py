"""No file tunelab loads can run code, and nothing a config or a run directory says can send writes elsewhere.

The hostile inputs here are real: a pickle whose loading creates a marker file (so each test can check that
it never ran, and the first test checks that it does run when unpickled the unsafe way), and a Hugging Face
model folder shipping its own Python code that also leaves a marker.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from test_bad_inputs import run_until_interrupted
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.comparison.grid import CompareConfig, planned_runs, slug
from tunelab.errors import TunelabError
from tunelab.models.families.tiny import tiny_bert
from tunelab.models.weights import load_pth


class Payload:
    """Unpickling this creates `marker`: what a hostile checkpoint would do with os.system instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_pickle(marker: Path) -> bytes:
    return pickle.dumps({"weight": Payload(marker)})


def test_the_payload_is_live(tmp_path):
    pickle.loads(hostile_pickle(tmp_path / "ran"))  # noqa: S301 - our own payload, to prove the tests below mean something
    assert (tmp_path / "ran").exists()


def error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# ---------------------------------------------------------------- checkpoints are safetensors


def test_every_file_a_run_writes_is_safetensors_or_text(tmp_path):
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "full",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
    ]
    run_until_interrupted(argv, stop_at_epoch=1)  # so the resume checkpoint is on disk too
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} == {
        "config.yaml",
        "metrics.jsonl",
        "model.safetensors",
        "latest",
        "trained.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    for path in written:
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{path.name} looks like a pickle or a torch.save zip"
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt") as f:
                assert list(f.keys())
        else:
            path.read_text(encoding="utf-8")
    assert main([*argv, "--resume"]) == 0


def test_a_pickle_named_model_safetensors_is_refused_without_running(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    assert (
        main(
            [
                "train",
                "--model",
                "tiny-cnn",
                "--strategy",
                "none",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    (tmp_path / "run" / "model.safetensors").write_bytes(hostile_pickle(tmp_path / "ran"))
    capsys.readouterr()
    assert main(["eval", "--run", str(tmp_path / "run"), "--data", str(data)]) == 2
    assert "model.safetensors is not a valid safetensors checkpoint" in error_line(capsys)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- .pth files load weights only


def test_pth_files_load_with_weights_only(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(hostile_pickle(tmp_path / "ran"))
    with pytest.raises(TunelabError, match="cannot load as a weights-only checkpoint"):
        load_pth(path)
    assert not (tmp_path / "ran").exists()


def test_a_timm_model_folder_with_a_hostile_pickle_is_refused(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet10t", "num_classes": 10}))
    (folder / "pytorch_model.bin").write_bytes(hostile_pickle(tmp_path / "ran"))
    assert main(["inspect", "--model", str(folder), "--num-classes", "2"]) == 2
    assert "cannot load the timm model: weights_only=True blocked loading" in error_line(capsys)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- remote code only when asked


def model_with_code(folder: Path, marker: Path) -> Path:
    """A saved tiny BERT whose config points transformers at Python code in the folder (`auto_map`)."""
    net, tokenizer = tiny_bert()
    net.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="tunelab-custom", auto_map={"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel"}
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).touch()\n"
        "from transformers import BertConfig, BertModel\n\n\n"
        "class CustomConfig(BertConfig):\n    model_type = 'tunelab-custom'\n\n\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n"
    )
    return folder


def test_model_code_runs_only_with_trust_remote_code(tmp_path, capsys):
    folder = model_with_code(tmp_path / "model", tmp_path / "ran")
    assert main(["inspect", "--model", str(folder), "--num-classes", "2"]) == 2
    assert error_line(capsys).endswith(
        "ships its own Python code, which tunelab does not run by default; "
        "read it, and if you trust it, add --trust-remote-code"
    )
    assert not (tmp_path / "ran").exists()
    assert main(["inspect", "--model", str(folder), "--num-classes", "2", "--trust-remote-code"]) == 0
    assert (tmp_path / "ran").exists()


def test_a_run_directory_cannot_turn_on_remote_code(tmp_path, capsys):
    """A shared run whose config.yaml says trust_remote_code: true still needs the user's flag to load."""
    folder = model_with_code(tmp_path / "model", tmp_path / "ran")
    data = write_text_tsv(tmp_path / "t.tsv")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                str(folder),
                "--strategy",
                "none",
                "--data",
                str(data),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--trust-remote-code",
            ]
        )
        == 0
    )
    assert "trust_remote_code: true" in (out / "config.yaml").read_text()
    (tmp_path / "ran").unlink()
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--data", str(data)]) == 2
    assert "add --trust-remote-code" in error_line(capsys)
    assert not (tmp_path / "ran").exists()
    assert main(["eval", "--run", str(out), "--data", str(data), "--trust-remote-code"]) == 0


def test_a_config_file_cannot_turn_on_remote_code_for_compare(tmp_path, capsys):
    (tmp_path / "cmp.yaml").write_text("model: tiny-bert\ntrust_remote_code: true\n")
    assert (
        main(["compare", "--config", str(tmp_path / "cmp.yaml"), "--data", "x.tsv", "--out", str(tmp_path / "c")]) == 2
    )
    assert "trust_remote_code can only be turned on on the command line" in error_line(capsys)
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- writes stay inside the run


@settings(max_examples=100, deadline=None)
@given(spec=st.text(max_size=30))
def test_no_strategy_spec_names_a_folder_outside_the_comparison(spec):
    name = slug(spec)
    assert name and "/" not in name and "\\" not in name and name not in (".", "..")
    base = Path("/cmp/runs/fraction-1")
    assert (base / name).resolve().parent == base


def test_compare_run_directories_stay_under_out(tmp_path):
    config = CompareConfig(
        model="tiny-cnn",
        data="d",
        out=str(tmp_path / "cmp"),
        strategies=("none", "full:lr_mult=0.05", "retrain:2", "adapter:4", "lora:2", "scratch"),
        data_fractions=(0.25, 1.0),
        folds=2,
    )
    runs = planned_runs(config)
    root = (tmp_path / "cmp" / "runs").resolve()
    assert all(Path(r.out).resolve().is_relative_to(root) for r in runs)
    assert len({r.out for r in runs}) == len(runs)


def test_a_checkpoint_pointer_cannot_lead_out_of_the_run(tmp_path, capsys):
    """checkpoint/latest is data read from disk: a shared run directory could aim it anywhere."""
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    argv = [
        "train",
        "--model",
        "tiny-cnn",
        "--strategy",
        "full",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "3",
    ]
    run_until_interrupted(argv, stop_at_epoch=1)
    shutil.copytree(out / "checkpoint" / "epoch-0001", tmp_path / "outside")
    for pointer in (str(tmp_path / "outside"), "../../outside", "epoch-0001/../../../outside"):
        (out / "checkpoint" / "latest").write_text(pointer)
        capsys.readouterr()
        assert main([*argv, "--resume"]) == 2
        assert "checkpoint/latest is damaged" in error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == [
        "optimizer.safetensors",
        "state.json",
        "trained.safetensors",
    ]
