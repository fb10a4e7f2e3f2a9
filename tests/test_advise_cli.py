"""`tunelab advise` from the command line: JSON advice, verification by a short compare, bad input."""

from __future__ import annotations

import json

from train_fixtures import write_image_folder
from tunelab.cli import main
from tunelab.strategies import parse_strategy


def test_advise_json_and_verify(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    code = main(
        [
            "advise",
            "--model",
            "tiny-cnn",
            "--data",
            str(data),
            "--json",
            "--verify",
            "--verify-epochs",
            "1",
            "--out",
            str(tmp_path / "verify"),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    advice = result["advice"]
    parse_strategy(advice["recommendation"]), parse_strategy(advice["runner_up"])
    assert advice["reasons"]
    assert advice["baseline"]["rule"] == "always lora"  # the constant rule it had to beat, and whether they agree
    assert advice["baseline"]["agrees"] == (advice["recommendation"] == "lora")
    assert len(advice["evidence"]["probe_per_block"]) == len(advice["evidence"]["block_names"])  # the measurements
    assert set(result["verification"]["scores"]) == {advice["recommendation"], advice["runner_up"]}
    assert (tmp_path / "verify" / "report.html").is_file()


def test_one_class_is_a_one_line_error(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    for image in (data / "red").iterdir():
        image.unlink()
    (data / "red").rmdir()
    assert main(["advise", "--model", "tiny-cnn", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunelab: error: ") and err.count("\n") == 1
