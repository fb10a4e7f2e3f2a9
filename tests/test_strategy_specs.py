"""Strategy specs parse from text and format back to the same text."""

from __future__ import annotations

import pytest

from tunelab.strategies import parse_strategy
from tunelab.strategies.adapter import Adapter
from tunelab.strategies.full import FullTune
from tunelab.strategies.lora import LoRA
from tunelab.strategies.retrain import ReTrain


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("retrain:3", ReTrain(k=3)),
        ("adapter:8", Adapter(reduction=8)),
        ("lora:4:alpha=8", LoRA(rank=4, alpha=8.0)),
        ("full:decay=0.8", FullTune(decay=0.8)),
        ("full:freeze_bn=true:lr_mult=0.05", FullTune(lr_mult=0.05, freeze_bn=True)),
        ("retrain", ReTrain()),
    ],
)
def test_specs_parse_and_round_trip(spec, expected):
    strategy = parse_strategy(spec)
    assert strategy == expected
    assert parse_strategy(strategy.spec()) == strategy


def test_positional_goes_first_when_formatting():
    assert LoRA(rank=4, alpha=4.0).spec() == "lora:4:alpha=4.0"
