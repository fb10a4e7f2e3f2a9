"""The recipes beyond the four strategies (issue 18): gradual unfreezing, LP-FT, BitFit, L2-SP, WiSE-FT,
frozen word embeddings, on the tiny models.

Each phase trains exactly its groups; LP-FT's fine-tuning starts from the probe's head; WiSE-FT at alpha 0
is the pretrained backbone and at 1 the fine-tuned one; a run resumed at a phase switch ends bit for bit
like a straight one. The contract every strategy keeps (logits unchanged at apply, closed-form counts) is in
test_strategies_contract.py, which reads the registry.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import tunelab.runs.epoch as epoch_module
from conftest import TINY_MODELS, make_batch
from recipe_fixtures import biasless_cnn
from tunelab.cli import main
from tunelab.comparison.plots import phase_switches
from tunelab.errors import TunelabError
from tunelab.models.zoo import load_backbone
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.checkpoints import CheckpointSaver, Progress
from tunelab.runs.epoch import _build_step, _fit, seed_everything
from tunelab.runs.job import build_feed, load_job, model_meta
from tunelab.runs.loop import train
from tunelab.runs.prepare import prepare
from tunelab.runs.recipe import Recipe
from tunelab.runs.rundir import RunDir
from tunelab.settings import TrainConfig
from tunelab.strategies import parse_strategy, set_train_mode
from tunelab.strategies.base import batchnorm_types
from tunelab.strategies.describe import format_plan, plan_dict
from tunelab.strategies.gradual import Gradual
from tunelab.strategies.wiseft import WiSEFT


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def steps(plan, optimizer, n: int = 2) -> None:
    """`n` optimizer steps on one batch, in train mode as the loop sets it."""
    model = plan.backbone.model
    batch, labels = make_batch(plan.backbone)
    for _ in range(n):
        set_train_mode(model)
        F.cross_entropy(model(batch), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def changed(before: dict, after: dict, names) -> set[str]:
    return {n for n in names if not torch.equal(before[n], after[n])}


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(model="tiny-cnn", strategy="full", epochs=3, batch_size=8, lr=1e-2, seed=0, val_fraction=0.25)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


# ---------------------------------------------------------------- phases: exactly the intended tensors train


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("spec", ["gradual", "gradual:2:decay=0.7"])
def test_each_phase_trains_exactly_its_groups_with_one_optimizer(model_name, spec):
    """One optimizer over the union of the phases (as the loop builds it), weight decay on: a frozen group's
    parameters and BatchNorm statistics do not move, not even by decay, and every other group's do."""
    plan = prepare(model_name, spec, 3)
    model = plan.backbone.model
    phases = plan.phases(4)
    assert phases[0].name == "head" and phases[-1].name == "everything" and not phases[-1].frozen
    assert [len(p.frozen) for p in phases] == sorted((len(p.frozen) for p in phases), reverse=True)
    optimizer = torch.optim.AdamW(plan.optimizer_groups(1e-2, weight_decay=0.1))
    params = [n for n, _ in model.named_parameters()]
    for phase in phases:
        before = snapshot(model)
        with plan.in_phase(phase):
            trains = {n for g in plan.groups if g.name not in phase.frozen for n in g.names}
            steps(plan, optimizer)
            blocks = plan.backbone.blocks
            frozen_blocks = [i for i, b in enumerate(blocks) if not any(p.requires_grad for p in b.parameters())]
        after = snapshot(model)
        assert changed(before, after, params) == trains, phase.name
        assert frozen_blocks == list(range(len(frozen_blocks))), "a phase freezes the blocks below the unfrozen top"
        for name, module in model.named_modules():
            if isinstance(module, batchnorm_types()):
                block = int(name.split(".")[1])
                stats_moved = not torch.equal(before[f"{name}.running_mean"], after[f"{name}.running_mean"])
                assert stats_moved == (block not in frozen_blocks), (phase.name, name)
        assert all(p.requires_grad for p in model.parameters()), "outside a phase the plan is its union again"


def test_gradual_splits_the_blocks_from_the_top_and_checks_the_run_length():
    plan = prepare("tiny-cnn", "gradual", 3)  # 5 blocks: stem, stage1-3, neck
    assert [(p.first_epoch, p.name) for p in plan.phases(5)] == [
        (0, "head"),
        (1, "stage3..neck + head"),
        (2, "stage1..neck + head"),
        (3, "everything"),
    ]
    assert [p.first_epoch for p in plan.phases(3)] == [0, 1, 2]  # 3 groups do not fit: as many as the run allows
    assert [p.frozen for p in plan.phases(1)] == [frozenset(f"block.{i}" for i in range(5))]  # too short: head only
    assert Gradual(every=2).phase_starts(7) == (0, 2, 4, 6)
    with pytest.raises(TunelabError, match="stage 3 \\(the bottom group\\) begins at epoch 4, after a 3-epoch run"):
        Gradual(groups=3).phase_starts(3)
    with pytest.raises(TunelabError, match="groups must be between 1 and 5 for tiny-cnn"):
        prepare("tiny-cnn", "gradual:6", 3)


# ---------------------------------------------------------------- BitFit, frozen embeddings, L2-SP


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_bitfit_trains_the_biases_of_the_blocks_and_the_head(model_name):
    plan = prepare(model_name, "bitfit", 3)
    model = plan.backbone.model
    biases = {n for n, _ in model.named_parameters() if n.startswith("blocks.") and n.endswith(".bias")}
    head = {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert biases and {n for g in plan.groups for n in g.names} == biases | head
    before = snapshot(model)
    steps(plan, torch.optim.AdamW(plan.optimizer_groups(1e-2)))
    assert changed(before, snapshot(model), [n for n, _ in model.named_parameters()]) == biases | head


def test_bitfit_refuses_a_model_without_biases():
    backbone = biasless_cnn()
    backbone.replace_head(3)
    with pytest.raises(TunelabError, match="has no bias terms in its blocks, so only the head would train"):
        parse_strategy("bitfit").apply(backbone)


def test_freeze_embeddings_keeps_the_word_table_and_trains_the_rest():
    plan = prepare("tiny-bert", "full:freeze_embeddings=true", 3)
    model, table = plan.backbone.model, plan.backbone.word_embeddings.weight
    full = prepare("tiny-bert", "full", 3)
    assert plan.trainable_params == full.trainable_params - table.numel()
    before = snapshot(model)
    steps(plan, torch.optim.AdamW(plan.optimizer_groups(1e-2)))
    after = snapshot(model)
    name = next(n for n, p in model.named_parameters() if p is table)
    others = [n for n, _ in model.named_parameters() if n != name]
    assert torch.equal(before[name], after[name])
    assert changed(before, after, others) == set(others)
    with pytest.raises(TunelabError, match="tiny-cnn has no word embeddings to freeze \\(image model\\)"):
        prepare("tiny-cnn", "full:freeze_embeddings=true", 3)


def test_l2sp_pulls_toward_the_start_instead_of_decaying_and_adds_its_term_to_the_loss():
    plan = prepare("tiny-cnn", "full:l2sp=0.5", 3)
    groups = {g["name"]: g["weight_decay"] for g in plan.optimizer_groups(1e-3, weight_decay=0.01)}
    assert groups == {"backbone": 0.0, "backbone.no_decay": 0.0, "head": 0.01, "head.no_decay": 0.0}
    recipe = Recipe(plan, epochs=1, main=False)
    backbone = [p for g in plan.groups if g.name == "backbone" for p in g.params]
    assert recipe.pull().item() == 0.0  # at the start
    deltas = []
    with torch.no_grad():
        for p in backbone:
            deltas.append(torch.randn_like(p) * 0.01)
            p.add_(deltas[-1])
    pull = recipe.pull()
    expected = 0.5 * 0.5 * sum(float((d.double() ** 2).sum()) for d in deltas)
    assert pull.item() == pytest.approx(expected, rel=1e-5)
    pull.backward()
    for p, d in zip(backbone, deltas):
        assert torch.allclose(p.grad, 0.5 * d, atol=1e-7)  # d/dw alpha/2 ||w - w0||^2 = alpha (w - w0)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    loss = recipe.training_loss(lambda x, y, reduction="mean": F.cross_entropy(x, y, reduction=reduction), None)
    assert loss(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item() + pull.item(), rel=1e-6)
    summed = loss(logits, labels, reduction="sum").item()  # a batch of an accumulation group: pull x its weight
    assert summed == pytest.approx(F.cross_entropy(logits, labels, reduction="sum").item() + 4 * pull.item(), rel=1e-6)
    assert Recipe(prepare("tiny-cnn", "full", 3), 1, False).training_loss(F.cross_entropy, None) is F.cross_entropy


# ---------------------------------------------------------------- LP-FT and WiSE-FT through the loop's own steps


def start_run(cfg: TrainConfig) -> SimpleNamespace:
    """What `runs.loop._train` builds before its first epoch, in the same order (without the lock and announce)."""
    from accelerate import Accelerator

    run = RunDir(Path(cfg.out))
    run.path.mkdir(parents=True)
    accelerator = Accelerator(cpu=True)
    seed_everything(cfg.seed)
    job = load_job(cfg)
    recipe = Recipe.of(job)
    feed = build_feed(job, run, accelerator)
    step, validation = _build_step(job, feed, accelerator)
    step = replace(step, loss=recipe.training_loss(step.loss, step.class_weight))
    saver = CheckpointSaver(run, job.plan.backbone.model, step.optimizer, step.scheduler, model_meta(job))
    return SimpleNamespace(run=run, accelerator=accelerator, job=job, recipe=recipe, feed=feed, step=step,
                           validation=validation, saver=saver)  # fmt: skip


def is_head(name: str) -> bool:
    return name.startswith("head.")


def test_lpft_probes_the_head_alone_and_fine_tuning_starts_from_that_head(images, tmp_path):
    r = start_run(config(images, tmp_path / "run", strategy="lpft:4", epochs=1))
    model = r.job.plan.backbone.model
    start = snapshot(model)
    r.recipe.probe_head(r.job, r.run, r.feed, r.accelerator, r.step.loss, r.validation)
    probed = snapshot(model)
    assert all(torch.equal(start[k], probed[k]) for k in start if not is_head(k)), "the backbone (and its BN stats)"
    assert all(not torch.equal(start[k], probed[k]) for k in start if is_head(k))
    assert not r.step.optimizer.state, "the probe has an optimizer of its own"
    report = r.recipe.probe_report
    assert report["epochs"] == 4 and report["cached"] and 0.0 <= report["val_accuracy"] <= 1.0
    assert not list((r.run.path / "cache").glob("*.npy")), "the probe's features are deleted after it"

    # fine-tune with the head's learning rate at 0: it ends exactly where the probe left it; the backbone moves
    for i, group in enumerate(r.step.optimizer.param_groups):
        if group["name"].startswith("head"):
            group["lr"] = r.step.scheduler.base_lrs[i] = 0.0
    _fit(r.job, r.step, r.validation, r.saver, Progress(), r.recipe)
    tuned = snapshot(model)
    assert all(torch.equal(probed[k], tuned[k]) for k in probed if is_head(k))
    assert any(not torch.equal(probed[k], tuned[k]) for k in probed if not is_head(k))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wiseft_at_0_is_the_pretrained_backbone_and_at_1_the_fine_tuned_one(images, tmp_path, alpha):
    r = start_run(config(images, tmp_path / "run", strategy=f"wiseft:{alpha}", epochs=1))
    pretrained = snapshot(r.job.plan.backbone.model)
    progress = _fit(r.job, r.step, r.validation, r.saver, Progress(), r.recipe)
    fine_tuned, _ = load_tensors(r.run.model)
    after = r.recipe.mix_weights(r.job, r.step, r.validation, r.run, r.saver.meta, progress)
    mixed, meta = load_tensors(r.run.model)
    assert mixed.keys() == fine_tuned.keys()
    kept = lambda k: alpha == 1.0 or is_head(k) or not mixed[k].is_floating_point()  # noqa: E731 - step counts
    expected = {k: (fine_tuned if kept(k) else pretrained)[k] for k in mixed}
    assert all(torch.equal(mixed[k], expected[k]) for k in mixed)
    assert any(not torch.equal(fine_tuned[k], pretrained[k]) for k in mixed if not is_head(k))  # it did train
    report = json.loads(meta["weight_mix"])
    assert report["alpha"] == alpha and report["chosen_on"] == "given" and list(report["val_scores"]) == [f"{alpha:g}"]
    assert after.best_score == report["val_score"]

    # a run stopped after saving the mix and resumed does not mix the mix again
    saved = r.run.model.read_bytes()
    again = r.recipe.mix_weights(r.job, r.step, r.validation, r.run, r.saver.meta, progress)
    assert r.run.model.read_bytes() == saved and again.best_score == after.best_score


def test_wiseft_chooses_alpha_on_validation_and_reports_it(images, tmp_path, capsys):
    summary = train(config(images, tmp_path / "run", strategy="wiseft", epochs=2))
    mix = summary["weight_mix"]
    assert list(mix["val_scores"]) == [f"{i / 10:g}" for i in range(11)] and mix["chosen_on"] == "validation"
    assert mix["val_scores"][f"{mix['alpha']:g}"] == max(mix["val_scores"].values()) == mix["val_score"]
    assert summary["val_score"] == mix["val_score"] and summary["score"] == mix["val_score"]  # scored on validation
    last = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("best val"))
    assert f"; WiSE-FT alpha {mix['alpha']:g} (chosen on validation; fine-tuned alone: " in last
    _, meta = load_tensors(tmp_path / "run" / "model.safetensors")
    assert json.loads(meta["weight_mix"])["alpha"] == mix["alpha"]


def test_lpft_run_reports_its_probe_and_counts_only_fine_tuning_epochs(images, tmp_path, capsys):
    summary = train(config(images, tmp_path / "run", strategy="lpft:3", epochs=2))
    assert summary["epochs"] == 2 and summary["probe"]["epochs"] == 3 and "val_accuracy" in summary["probe"]
    assert "linear probe: the head for 3 epochs on cached features of all 5 blocks" in capsys.readouterr().err
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------- resume at a phase switch


@pytest.mark.parametrize(
    "spec, stops",
    [("gradual:2", (1, 2)), ("lpft:2", (1,)), ("full:l2sp=1.0", (1,)), ("wiseft", (2,))],
)
def test_a_run_resumed_at_a_phase_switch_ends_like_a_straight_one(images, tmp_path, monkeypatch, capsys, spec, stops):
    """gradual:2 over 3 epochs switches phase at epochs 2 and 3: stopped while either runs, the resumed run
    enters the phase the straight run entered. LP-FT resumes without probing again; L2-SP still pulls toward
    the pretrained weights (not the restored ones); WiSE-FT mixes the same best epoch."""
    settings = dict(strategy=spec, epochs=3)
    straight_summary = train(config(images, tmp_path / "straight", **settings))
    straight = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    real_epoch = epoch_module._train_epoch
    for stop in stops:
        out = tmp_path / f"resumed-{stop}"

        def interrupted(step, epoch, cfg, stop=stop):
            if epoch == stop:
                raise KeyboardInterrupt
            return real_epoch(step, epoch, cfg)

        monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(config(images, out, **settings))
        monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
        capsys.readouterr()
        summary = train(config(images, out, resume=True, **settings))
        err = capsys.readouterr().err
        resumed = (out / "metrics.jsonl").read_text().splitlines()
        drop_time = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]  # noqa: E731
        assert drop_time(resumed) == drop_time(straight)
        b, _ = load_tensors(out / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert summary["score"] == straight_summary["score"]
        if spec.startswith("gradual"):
            assert f"phase {stop + 1}/3 from epoch {stop + 1}" in err
            assert [json.loads(x)["phase"] for x in resumed] == ["head", "stage2..neck + head", "everything"]
        if spec.startswith("lpft"):
            assert "linear probe" not in err and "before" in summary["probe"]
        if spec == "wiseft":
            assert summary["weight_mix"] == straight_summary["weight_mix"]


# ---------------------------------------------------------------- what inspect, specs and plots show


def test_inspect_shows_each_recipes_groups_and_phases(capsys):
    text = format_plan(prepare("tiny-bert", "gradual", 3))
    assert "parameter groups (lr x head lr, params): block.0 0.1x" in text
    assert "phases over 5 epochs: epoch 1: head | epoch 2: layer.1 + head | epoch 3: layer.0..layer.1 + head" in text
    assert "epochs 4-5: everything" in text
    assert "linear probe, the head alone for 10 epochs" in format_plan(prepare("tiny-cnn", "lpft", 3))
    assert "L2-SP: alpha/2 ||w - w_pretrained||^2 with alpha 0.1 on backbone" in format_plan(
        prepare("tiny-cnn", "full:l2sp=0.1", 3)
    )
    assert "alpha chosen on validation from 0, 0.1, ..., 1" in format_plan(prepare("tiny-cnn", "wiseft", 3))
    assert "phases" not in format_plan(prepare("tiny-cnn", "full", 3))
    assert main(["inspect", "--model", "tiny-cnn", "--strategy", "gradual:2", "--num-classes", "3", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [p["first_epoch"] for p in shown["phases"]] == [1, 2, 3] and shown["phases"][0]["name"] == "head"
    assert plan_dict(prepare("tiny-cnn", "wiseft:0.3", 3))["weight_mix"]["alpha"] == 0.3


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("wiseft:alpha=auto", WiSEFT()),
        ("wiseft:0.3", WiSEFT(alpha=0.3)),
        ("gradual:2:every=2:decay=0.8", Gradual(groups=2, every=2, decay=0.8)),
        ("gradual:auto", Gradual()),
    ],
)
def test_recipe_specs_parse_and_round_trip(spec, expected):
    assert parse_strategy(spec) == expected and parse_strategy(expected.spec()) == expected


def test_compare_plots_mark_phase_switches_from_the_spec():
    assert phase_switches("gradual:2", 3) == (1, 2)
    assert phase_switches("gradual", 10) == (1, 2, 3)
    assert phase_switches("full", 5) == phase_switches("lpft", 5) == phase_switches("nonsense", 5) == ()


def test_a_recipe_applies_to_any_backbone_the_contract_builds():
    """The recipes need nothing beyond the contract: blocks, head, word_embeddings for text."""
    for name in TINY_MODELS:
        backbone = load_backbone(name)
        backbone.replace_head(3)
        plan = parse_strategy("gradual").apply(backbone)
        assert len(plan.phases(4)) == 4


def test_compare_refuses_a_phase_that_would_begin_after_the_run_before_anything_trains(tmp_path):
    from tunelab.comparison.grid import strategy_specs
    from tunelab.settings import CompareConfig

    config = CompareConfig(model="tiny-cnn", data=str(tmp_path), strategies=("none", "gradual:3"), epochs=3)
    with pytest.raises(
        TunelabError, match="gradual:3: stage 3 \\(the bottom group\\) begins at epoch 4, after a 3-epoch"
    ):
        strategy_specs(config)
    assert strategy_specs(replace(config, epochs=4)) == ("none", "gradual:3")
    assert main(["compare", "--model", "tiny-cnn", "--data", str(tmp_path), "--strategies", "gradual:3",
                 "--epochs", "2", "--out", str(tmp_path / "cmp")]) == 2  # fmt: skip
    assert not (tmp_path / "cmp").exists()
