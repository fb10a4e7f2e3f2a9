"""The registries are the one list: a strategy defined here, registered for one test, reaches every place
that lists strategies (help, compare's default grid, advise's candidates, inspect) without any other file
changing. Declaring strategies and tasks loads no torch."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from tunelab.advice.measure import candidate_specs, candidates
from tunelab.cli import build_parser
from tunelab.comparison.grid import planned_runs
from tunelab.errors import TunelabError
from tunelab.models.zoo import load_backbone
from tunelab.runs.prepare import prepare
from tunelab.settings import CompareConfig
from tunelab.strategies import REGISTRY, Plan, Strategy, parse_strategy, register_strategy, registered_strategy
from tunelab.strategies.base import Inserted, freeze, group, head_group
from tunelab.strategies.describe import format_plan, plan_rows
from tunelab.strategies.layers import added_params
from tunelab.tasks import REGISTRY as TASKS
from tunelab.tasks import TaskEntry, get_task, registered_task, single_label_tasks


class Offset(nn.Module):
    """A learnt scalar added to a module's output, zero at insertion (so the logits do not change)."""

    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.value


class Nudged(nn.Module):
    """Runs the original module, then the offset. Its parameter names mention neither 'adapter' nor 'lora_'."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.nudge = Offset()

    def forward(self, *args, **kwargs):
        return self.nudge(self.inner(*args, **kwargs))


@dataclass(frozen=True)
class Nudge(Strategy):
    """A throwaway strategy: the backbone frozen, one scalar offset after each of the last `sites` adapter sites."""

    sites: int = 1
    """How many adapter sites (from the head backwards) get an offset."""

    key = "nudge"
    positional = "sites"
    summary = "scalar offsets after the last sites, backbone frozen (a test's strategy)"

    def apply(self, backbone) -> Plan:
        freeze(backbone.model)
        before = {id(p) for p in backbone.model.parameters()}
        chosen = backbone.adapter_sites[-self.sites :]
        for site in chosen:
            backbone.model.set_submodule(site.path, Nudged(backbone.model.get_submodule(site.path)))
        paths = [f"{site.path}.nudge" for site in chosen]
        names = added_params(backbone.model, before, paths)
        inserted = [Inserted(site.block, path, "offset", n) for site, path, n in zip(chosen, paths, names)]
        nudges = group(backbone.model, "nudges", "blocks", 1.0, only=frozenset(n for ns in names for n in ns))
        return Plan(self, backbone, [nudges, head_group(backbone)], inserted)


@pytest.fixture
def nudge():
    """Nudge registered for one test, unregistered afterwards."""
    with registered_strategy(Nudge) as cls:
        yield cls


def flat(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return flat(capsys.readouterr().out)


def test_a_registered_strategy_parses_and_formats(nudge):
    assert parse_strategy("nudge:2") == Nudge(sites=2)
    assert Nudge(sites=2).spec() == "nudge:2"
    assert list(REGISTRY)[-1] == "nudge"


@pytest.mark.parametrize("command", ["inspect", "train"])
def test_a_registered_strategy_is_in_the_help(nudge, capsys, command):
    assert "nudge:<sites> = scalar offsets after the last sites" in help_of([command, "--help"], capsys)


def test_a_registered_strategy_is_in_compares_default_grid(nudge, tmp_path):
    config = CompareConfig(model="tiny-cnn", data=str(tmp_path), out=str(tmp_path / "compare"))
    assert [run.strategy for run in planned_runs(config)] == list(REGISTRY)
    assert "nudge" in list(REGISTRY)


def test_a_registered_strategy_is_an_advise_candidate_classified_by_its_plan(nudge):
    assert candidate_specs(1)[-1] == "nudge"
    params, _, efficient = candidates(load_backbone("tiny-cnn"), num_classes=3)
    assert params["nudge"] == params["none"] + 1  # the head and one scalar offset
    assert "nudge" in efficient and "none" not in efficient


def test_a_registered_strategy_is_inspected_from_its_plan_not_from_parameter_names(nudge):
    plan = prepare("tiny-cnn", "nudge", num_classes=3)
    rows = {row.index: row for row in plan_rows(plan)}
    last = plan.inserted[0].block
    assert rows[last].state == "frozen+inserted" and rows[last].inserted == "offset" and rows[last].trainable == 1
    assert all(rows[i].state == "frozen" for i in rows if i not in (last, None))
    assert plan.inserted_params == {f"{plan.backbone.adapter_sites[-1].path}.nudge.value"}
    assert "nudge" in format_plan(plan) and "trainable params: " in format_plan(plan)


def test_a_strategy_leaves_no_trace_once_unregistered(capsys):
    with registered_strategy(Nudge):
        assert "nudge" in REGISTRY
    assert "nudge" not in REGISTRY
    with pytest.raises(TunelabError, match="unknown strategy 'nudge'"):
        parse_strategy("nudge")
    assert "nudge:<sites>" not in help_of(["train", "--help"], capsys)


def test_the_registry_refuses_a_strategy_that_breaks_the_contract():
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(REGISTRY["none"])

    class Loose(Strategy):  # not a frozen dataclass
        key = "loose"
        summary = "x"

        def apply(self, backbone):
            raise NotImplementedError

    with pytest.raises(TypeError, match="frozen"):
        register_strategy(Loose)

    @dataclass(frozen=True)
    class Misnamed(Loose):
        key = "a:b"

    with pytest.raises(ValueError, match="key"):
        register_strategy(Misnamed)
    assert "loose" not in REGISTRY and "a:b" not in REGISTRY


def test_every_task_entry_matches_the_class_it_names():
    for name, entry in TASKS.items():
        task = get_task(name)
        assert (task.name, task.modality) == (entry.name, entry.modality)
    assert single_label_tasks() == ("image-classification", "text-classification")


def test_a_registered_task_is_listed_without_being_imported():
    entry = TaskEntry(
        "image-regression", "image", "a number per image", "tunelab.no_such_module:Regression", single_label=True
    )
    with registered_task(entry):
        assert "image-regression" in TASKS and "image-regression" in single_label_tasks()
    assert "image-regression" not in TASKS


def test_declaring_strategies_and_tasks_loads_no_torch():
    """The CLI lists both in its help, which must answer in well under the time `import torch` takes."""
    code = (
        "import sys, tunelab.strategies, tunelab.tasks; "
        "heavy = sorted(m for m in ('torch', 'peft', 'transformers', 'timm', 'torchvision') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
