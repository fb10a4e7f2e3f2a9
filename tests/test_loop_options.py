"""The everyday loop options: optimizer, schedule, gradient accumulation, label smoothing, class weights, --metric.

Each is run through the CLI on tiny models and its effect measured: SGD leaves momentum buffers, every
schedule follows its formula per optimizer step, 2 x 4 accumulated trains like a batch of 8, the training
loss changes with smoothing and weights while the validation loss does not, the metric chosen picks the
epoch (ties to the lower validation loss) and is named in summary.json; and a run with all of them resumes
bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tunelab.runs.epoch as epoch_module
from task_fixtures import write_conll, write_semeval
from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.checkpoints import Progress
from tunelab.runs.optim import build_optimizer, build_scheduler, describe_learning_rates, schedule_factor
from tunelab.runs.prepare import prepare
from tunelab.settings import LoopSettings, TrainConfig
from tunelab.strategies.base import DEFAULT_WEIGHT_DECAY
from tunelab.tasks import get_task
from tunelab.tasks.base import IGNORE, balanced_class_weights, target_weight, task_loss


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """28 images, 2 classes: with --val-fraction 0.2, 22 train (batches of 8: 8, 8, 6; of 4: 4, 4, 4, 4, 4, 2)."""
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=14)


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    base = ["train", "--model", "tiny-cnn", "--data", str(data), "--out", str(out), "--val-fraction", "0.2"]
    return [*base, "--seed", "0", *extra]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def config(**kw) -> TrainConfig:
    return TrainConfig(model="tiny-cnn", **kw)


# ---------------------------------------------------------------- optimizer and schedule


def test_the_library_default_weight_decay_is_the_settings_default():
    default = next(f.default for f in fields(LoopSettings) if f.name == "weight_decay")
    assert DEFAULT_WEIGHT_DECAY == default
    plan = prepare("tiny-cnn", "full", 2)
    decays = {g["name"]: g["weight_decay"] for g in plan.optimizer_groups(1e-3)}
    assert decays["head"] == default and decays["head.no_decay"] == 0.0


def test_sgd_takes_momentum_and_l2_weight_decay_and_adamw_is_fused():
    plan = prepare("tiny-cnn", "full", 2)
    groups = plan.optimizer_groups(0.1, 0.01)
    sgd = build_optimizer(config(optimizer="sgd", momentum=0.8), groups, torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and all(g["momentum"] == 0.8 for g in sgd.param_groups)
    assert [g["lr"] for g in sgd.param_groups] == [g["lr"] for g in groups]  # each group keeps its own lr
    adamw = build_optimizer(config(), plan.optimizer_groups(0.1, 0.01), torch.device("cpu"))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["fused"]


def two_group_optimizer() -> torch.optim.Optimizer:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [a], "lr": 1e-2}, {"params": [b], "lr": 1e-3}], lr=1e-2)


def lr_curve(scheduler, steps: int) -> list[list[float]]:
    curve = []
    for _ in range(steps):
        curve.append([g["lr"] for g in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return curve


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_each_schedule_follows_its_formula_in_every_group(kind):
    total, warmup = 20, 0.2  # 4 warmup steps
    scheduler = build_scheduler(config(scheduler=kind, warmup=warmup), two_group_optimizer(), total)
    for step, (head, backbone) in enumerate(lr_curve(scheduler, total)):
        if step < 4:
            expected = (step + 1) / 4
        else:
            done = (step - 4) / 16
            expected = {"cosine": 0.5 * (1 + math.cos(math.pi * done)), "linear": 1 - done, "constant": 1.0}[kind]
        assert head == pytest.approx(1e-2 * expected) and backbone == pytest.approx(1e-3 * expected)


@pytest.mark.parametrize("total, rising", [(20, 0.3), (7, 0.5), (100, 0.1)])
def test_onecycle_is_torchs_one_cycle_lr_curve_in_every_group(total, rising):
    ours = build_scheduler(config(scheduler="onecycle", warmup=rising), two_group_optimizer(), total)
    reference_optimizer = two_group_optimizer()
    reference = torch.optim.lr_scheduler.OneCycleLR(
        reference_optimizer, max_lr=[1e-2, 1e-3], total_steps=total, pct_start=rising, cycle_momentum=False
    )
    expected = []
    for _ in range(total):
        expected.append([g["lr"] for g in reference_optimizer.param_groups])
        reference_optimizer.step()
        if len(expected) < total:
            reference.step()
    assert np.allclose(lr_curve(ours, total), expected, rtol=1e-12, atol=0)
    assert schedule_factor("onecycle", total, rising)(0) == pytest.approx(1 / 25)


def test_the_run_prints_each_groups_learning_rate_and_the_schedule_steps_per_optimizer_step(images, tmp_path, capsys):
    """22 examples in batches of 4, 2 per step: 6 batches, 3 optimizer steps an epoch, 6 in all."""
    run = tmp_path / "run"
    argv = ["--strategy", "full", "--epochs", "2", "--batch-size", "4", "--grad-accumulation", "2"]
    argv += ["--lr", "0.01", "--scheduler", "linear", "--warmup", "0", "--optimizer", "sgd", "--momentum", "0.5"]
    assert main(train_argv(images, run, *argv)) == 0
    err = capsys.readouterr().err
    assert (
        "learning rates: backbone 0.001 (0.1x), head 0.01; sgd, momentum 0.5, weight decay 0.01; "
        "linear schedule, 0% warmup; 2 batches per step (effective batch 8)"
    ) in err
    assert summary(run)["train_examples"] == 22
    # the record's lr is the first group's (backbone, 0.1x) after the epoch's optimizer steps: 3 of 6, then 6 of 6
    assert [r["lr"] for r in records(run)] == pytest.approx([0.001 * (1 - 3 / 6), 0.0])


def test_describe_learning_rates_names_groups_once_with_their_scale():
    plan = prepare("tiny-cnn", "full", 2)
    line = describe_learning_rates(config(lr=2e-5), plan.optimizer_groups(2e-5))
    assert line.startswith("learning rates: backbone 2e-06 (0.1x), head 2e-05; adamw, weight decay 0.01;")
    assert line.endswith("cosine schedule, 10% warmup")


# ---------------------------------------------------------------- gradient accumulation


def test_accumulating_two_batches_of_4_trains_like_batches_of_8(images, tmp_path):
    """Same example order (one shuffle per (seed, epoch)), the same gradient per optimizer step, the same schedule.

    `none` trains the head on cached features with the backbone (and its BatchNorm) frozen; the head's
    dropout draws its CPU masks in example order, so a batch of 8 and two of 4 drop the same units. The
    last group (4 + 2 examples) weighs each batch by its examples, as the batch of 6 does. What may differ:
    float summation order (a batch's loss is a sum over 4 then 4 rather than over 8).
    """
    common = ["--strategy", "none", "--epochs", "2", "--lr", "0.05", "--weight-decay", "0.01"]
    assert main(train_argv(images, tmp_path / "b8", *common, "--batch-size", "8")) == 0
    argv = train_argv(images, tmp_path / "b4x2", *common, "--batch-size", "4", "--grad-accumulation", "2")
    assert main(argv) == 0
    assert summary(tmp_path / "b8")["train_examples"] == 22  # 22 = 8 + 8 + 6: the last group is 4 + 2
    a, _ = load_tensors(tmp_path / "b8" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "b4x2" / "model.safetensors")
    initial = prepare("tiny-cnn", "none", 2).backbone.model.state_dict()
    for name in a:
        assert not torch.allclose(a[name], initial[name])  # it trained
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    val_b8, val_b4x2 = records(tmp_path / "b8"), records(tmp_path / "b4x2")
    assert [r["val_loss"] for r in val_b8] == pytest.approx([r["val_loss"] for r in val_b4x2], rel=1e-5)


def test_a_run_with_every_option_resumes_bit_for_bit(images, tmp_path, monkeypatch):
    """SGD (momentum buffers in the checkpoint), onecycle, accumulation with a short last group, class
    weights, label smoothing and --metric: interrupted in epoch 2 and resumed, it ends as the straight run."""
    options = ["--strategy", "full", "--epochs", "2", "--batch-size", "4", "--grad-accumulation", "2"]
    options += ["--optimizer", "sgd", "--scheduler", "onecycle", "--warmup", "0.3", "--lr", "0.02"]
    options += ["--class-weights", "balanced", "--label-smoothing", "0.1", "--metric", "macro_f1"]
    assert main(train_argv(images, tmp_path / "straight", *options)) == 0

    real_epoch = epoch_module._train_epoch

    def interrupted(step, epoch, config):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(step, epoch, config)

    monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
    assert main(train_argv(images, tmp_path / "resumed", *options)) == 2
    checkpoint = tmp_path / "resumed" / "checkpoint" / "epoch-0001"
    state, meta = load_tensors(checkpoint / "optimizer.safetensors")
    assert meta["optimizer"] == "SGD" and any(k.endswith("momentum_buffer") for k in state)
    monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
    assert main(train_argv(images, tmp_path / "resumed", *options, "--resume")) == 0

    def drop_time(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records(run)]

    assert drop_time(tmp_path / "resumed") == drop_time(tmp_path / "straight")
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary(tmp_path / "straight")["metric"] == "macro_f1"


def test_accumulation_with_the_adversary_trains_and_resumes(tmp_path, monkeypatch):
    """FGM on a trainable embedding table (full) under accumulation: each batch's attack sees only its own
    gradient (the group's earlier gradient is set aside and added back), and a resume repeats it exactly."""
    data = write_text_tsv(tmp_path / "reviews.tsv")
    options = ["--model", "tiny-bert", "--strategy", "full", "--epochs", "2", "--batch-size", "4"]
    options += ["--grad-accumulation", "3", "--adversarial", "fgm", "--lr", "0.01"]

    def argv(out, *extra):
        return ["train", "--data", str(data), "--out", str(out), "--val-fraction", "0.25", *options, *extra]

    assert main(argv(tmp_path / "straight")) == 0
    real_epoch = epoch_module._train_epoch

    def interrupted(step, epoch, config):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(step, epoch, config)

    monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
    assert main(argv(tmp_path / "resumed")) == 2
    monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
    assert main(argv(tmp_path / "resumed", "--resume")) == 0
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(math.isfinite(r["train_loss"]) for r in records(tmp_path / "straight"))


# ---------------------------------------------------------------- the loss


def test_label_smoothing_mixes_cross_entropy_with_the_uniform_target():
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 1, 0, IGNORE])
    plain = task_loss(logits, labels)
    smoothed = task_loss(logits, labels, label_smoothing=0.3)
    logp = logits[:5].log_softmax(-1)
    uniform = -logp.mean(-1).mean()
    assert smoothed == pytest.approx(float(0.7 * plain + 0.3 * uniform), rel=1e-6)


def test_balanced_weights_are_n_over_k_times_count_per_class_and_per_token():
    assert balanced_class_weights([0, 0, 0, 1], 2).tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    # tagging: every token label counts, IGNORE never; a class with no label gets 1
    tokens = [[0, 0, 1], [0, IGNORE, 2], [0]]
    assert balanced_class_weights(tokens, 4).tolist() == pytest.approx([6 / 16, 6 / 4, 6 / 4, 1.0])


def test_the_weighted_mean_divides_by_the_target_weight_so_sums_over_a_group_add_up():
    logits, labels = torch.randn(10, 3), torch.tensor([0, 1, 2, 1, 0, 0, 2, IGNORE, 1, 0])
    weight = torch.tensor([0.5, 2.0, 1.5])
    whole = task_loss(logits, labels, weight, 0.1)
    parts = [(logits[:4], labels[:4]), (logits[4:], labels[4:])]
    total = sum(target_weight(y, weight) for _, y in parts)
    summed = sum(task_loss(x, y, weight, 0.1, reduction="sum") for x, y in parts) / total
    assert summed == pytest.approx(float(whole), rel=1e-6)
    expected = F.cross_entropy(logits[labels != IGNORE], labels[labels != IGNORE], weight=weight, label_smoothing=0.1)
    assert whole == pytest.approx(float(expected), rel=1e-6)


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """A 20-to-8 folder: balanced weights are 28 / (2 x 16) and 28 / (2 x 6) on the 22 train examples."""
    root = write_image_folder(tmp_path_factory.mktemp("uneven"), per_class=14)
    for path in sorted((root / "red").iterdir())[8:]:
        path.rename(root / "blue" / f"moved-{path.name}")  # blue and red differ in colour: red images as blue
    return root


def test_smoothing_and_class_weights_change_the_training_loss_but_not_the_validation_loss(uneven, tmp_path):
    """At lr 0 the weights never move, so every run sees the same logits: what differs is only the loss."""
    common = ["--strategy", "none", "--epochs", "1", "--lr", "0", "--batch-size", "64"]
    runs = {
        "plain": [],
        "smoothed": ["--label-smoothing", "0.5"],
        "weighted": ["--class-weights", "balanced"],
    }
    results = {}
    for name, extra in runs.items():
        assert main(train_argv(uneven, tmp_path / name, *common, *extra)) == 0
        results[name] = records(tmp_path / name)[0]
    val = {name: r["val_loss"] for name, r in results.items()}
    assert val["smoothed"] == val["plain"] and val["weighted"] == val["plain"]  # validation: the plain loss
    train = {name: r["train_loss"] for name, r in results.items()}
    # at random init the logits are near zero, so the plain loss is near log 2, and smoothing's uniform
    # term pulls the loss toward the mean of -log p over the classes
    assert train["smoothed"] != train["plain"] and abs(train["smoothed"] - train["plain"]) < 0.05
    assert train["weighted"] != train["plain"]


def test_token_class_weights_apply_per_token_label_and_ignore_stays_ignored():
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[0, 1, IGNORE, 2], [0, IGNORE, IGNORE, 0]])
    weight = balanced_class_weights([[0, 1, 2], [0, 0]], 3)
    loss = task_loss(logits, labels, weight)
    keep = labels != IGNORE
    expected = F.cross_entropy(logits[keep], labels[keep], weight=weight)
    assert loss == pytest.approx(float(expected), rel=1e-6)
    assert target_weight(labels, weight) == pytest.approx(float(weight[labels[keep]].sum()))


# ---------------------------------------------------------------- --metric and ties


def test_metric_picks_the_epoch_and_is_named_in_the_summary(images, tmp_path):
    run = tmp_path / "run"
    extra = ["--strategy", "none", "--epochs", "2", "--batch-size", "8", "--metric", "macro_f1", "--lr", "0.05"]
    assert main(train_argv(images, run, *extra)) == 0
    result, epochs = summary(run), records(run)
    assert result["metric"] == "macro_f1"
    best = epochs[result["best_epoch"] - 1]
    assert result["val_score"] == best["val_macro_f1"] == max(r["val_macro_f1"] for r in epochs)


def test_a_metric_the_task_does_not_report_is_refused_before_any_epoch(images, tmp_path, capsys):
    assert main(train_argv(images, tmp_path / "run", "--strategy", "none", "--metric", "f1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "tunelab: error: --metric f1: image-classification reports no such metric; "
        "use one of accuracy, macro_f1, or auto (accuracy)"
    )
    assert not (tmp_path / "run").exists()


def test_ner_reports_entity_metrics_and_refuses_macro_f1(tmp_path):
    task = get_task("token-classification")
    examples = task.read(str(write_conll(tmp_path / "ner.txt")), None, config(data="x"))
    backbone = prepare("tiny-bert", "none", len(examples.classes), task="token-classification").backbone
    assert task.selecting("auto", examples, backbone, None).metric == "entity_f1"
    assert task.selecting("token_accuracy", examples, backbone, None).metric == "token_accuracy"
    assert type(task).metric == "entity_f1"  # the class default is untouched
    with pytest.raises(Exception, match=r"use one of entity_f1, precision, recall, token_accuracy, or auto"):
        task.selecting("macro_f1", examples, backbone, None)


@pytest.mark.parametrize("task", ["image-classification", "text-classification", "relation-classification"])
def test_every_classification_task_reports_macro_f1(task, images, tmp_path):
    files = {
        "image-classification": lambda: images,
        "text-classification": lambda: write_text_tsv(tmp_path / "reviews.tsv"),
        "relation-classification": lambda: write_semeval(tmp_path / "relations.txt"),
    }
    chosen = get_task(task)
    examples, _ = chosen.read_sets(config(data=str(files[task]())))
    model = "tiny-cnn" if task == "image-classification" else "tiny-bert"
    backbone = prepare(model, "none", len(examples.classes), task=task).backbone
    assert chosen.selecting("macro_f1", examples, backbone, None).metric == "macro_f1"


def test_a_tie_goes_to_the_lower_validation_loss():
    first = {"epoch": 1, "val_loss": 0.7}
    progress, improved = Progress().after(first, 0.5)
    assert improved and progress.best_loss == 0.7
    progress, improved = progress.after({"epoch": 2, "val_loss": 0.6}, 0.5)  # same score, lower loss: better
    assert improved and progress.best_epoch == 2 and progress.bad_epochs == 0
    progress, improved = progress.after({"epoch": 3, "val_loss": 0.65}, 0.5)  # same score, higher loss: not
    assert not improved and progress.best_epoch == 2 and progress.bad_epochs == 1
    progress, improved = progress.after({"epoch": 4, "val_loss": 0.9}, 0.6)  # a higher score wins whatever its loss
    assert improved and progress.best_epoch == 4


def test_an_old_checkpoint_state_resumes_with_the_tie_rule():
    """state.json keeps its format: the best epoch's loss is read from its metrics record."""
    saved = {"epoch": 2, "best_score": 0.5, "best_epoch": 1, "bad_epochs": 1}
    metrics = ({"epoch": 1, "val_loss": 0.7}, {"epoch": 2, "val_loss": 0.8})
    progress = Progress(**saved, metrics=metrics)
    assert progress.best_loss == 0.7
    _, improved = progress.after({"epoch": 3, "val_loss": 0.69}, 0.5)
    assert improved
    assert Progress(**{**saved, "best_epoch": 0}).best_loss == math.inf  # no record: any loss breaks the tie


def test_a_tie_on_the_metric_is_broken_by_validation_loss_in_a_run(images, tmp_path):
    """A slow head: every epoch classifies the validation set the same, while its loss falls."""
    run = tmp_path / "run"
    extra = ["--strategy", "none", "--epochs", "3", "--batch-size", "8", "--lr", "0.002", "--warmup", "0"]
    assert main(train_argv(images, run, *extra)) == 0
    epochs = records(run)
    scores, losses = [r["val_accuracy"] for r in epochs], [r["val_loss"] for r in epochs]
    assert len(set(scores)) == 1 and losses == sorted(losses, reverse=True) and len(set(losses)) == 3
    assert summary(run)["best_epoch"] == 3  # before ties were broken it was the first
    assert np.isfinite(summary(run)["val_score"])


def test_one_process_may_train_at_two_precisions_and_evaluate_after_bf16(tmp_path):
    """accelerate keeps one state per process and refuses a second Accelerator with another precision; a
    library user's second `train` (or `evaluate` after a bf16 run) in the same Python process must still work."""
    from tunelab import train
    from tunelab.runs.evaluate import evaluate

    data = write_text_tsv(tmp_path / "t.tsv")
    common = {"model": "tiny-bert", "strategy": "full", "data": str(data), "epochs": 1, "batch_size": 8}
    for i, precision in enumerate(("no", "bf16", "no")):
        out = tmp_path / f"run-{i}-{precision}"
        summary = train(TrainConfig(**common, out=str(out), mixed_precision=precision))
        assert math.isfinite(summary["score"])
    report = evaluate(tmp_path / "run-1-bf16", data)
    assert report.n > 0 and 0 <= report.accuracy <= 1
