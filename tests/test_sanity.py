"""Run-level sanity flags: one class for everything, a score at chance (pure functions and the tasks' own meaning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from task_fixtures import write_conll
from tunelab.data import Examples
from tunelab.data.conll import read_conll
from tunelab.runs.sanity import (
    AT_CHANCE_MARGIN,
    at_chance_flag,
    constant_logits,
    majority_label,
    one_class_flag,
    run_flags,
    warning_lines,
)
from tunelab.tasks import get_task
from tunelab.tasks.base import IGNORE
from tunelab.tasks.relation_classification import official_f1


def test_the_majority_label_counts_single_labels_and_per_token_labels():
    assert majority_label([0, 1, 1, 2]) == 1
    assert majority_label([2, 0, 0, 2]) == 0  # a tie goes to the lowest index
    assert majority_label([[0, 0, 1], [0, 2], [2, 2, 2]]) == 2  # per token: 0 three times, 2 four times
    assert majority_label([[1, 1], [0], [1, IGNORE, IGNORE, IGNORE]]) == 1  # IGNORE positions do not count


def test_constant_logits_predict_one_label_everywhere():
    logits = constant_logits(5, 3, 2)
    assert logits.shape == (5, 3) and logits.argmax(-1).tolist() == [2] * 5


def test_one_class_means_one_class_for_every_example_of_a_classification_task():
    task, classes = get_task("text-classification"), ("neg", "pos")
    assert task.degenerate(np.array([1, 1, 1, 1]), classes) == "predicts 'pos' for all 4 examples"
    assert task.degenerate(np.array([1, 0, 1, 1]), classes) is None
    assert task.degenerate(np.array([], dtype=int), classes) is None
    flag = one_class_flag(task.degenerate(np.array([0] * 7), classes), "test")
    assert flag == {
        "flag": "one-class",
        "message": "the best model predicts 'neg' for all 7 examples of the test set: "
        "it does not tell the classes apart",
    }


def test_for_ner_one_class_means_only_o_for_every_word():
    task, classes = get_task("token-classification"), ("O", "B-PER", "I-PER")
    assert (
        task.degenerate(np.array([0, 0, 0, 0, 0]), classes) == "predicts only O for all 5 words: it finds no entities"
    )
    assert task.degenerate(np.array([1, 1, 1]), classes) == "predicts 'B-PER' for all 3 words"
    assert task.degenerate(np.array([0, 0, 1, 0]), classes) is None  # one entity found: not degenerate


def test_for_relations_one_class_is_only_other_and_its_chance_is_zero():
    task = get_task("relation-classification")
    classes = ("Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Other")
    gold = np.array([0, 1, 2, 2, 0])
    only_other = np.full(5, 2)
    assert task.degenerate(only_other, classes) == "predicts 'Other' for all 5 examples"
    assert official_f1(gold, only_other, classes)[0] == 0.0


def test_at_chance_is_the_score_not_above_chance_plus_the_margin():
    assert AT_CHANCE_MARGIN == 0.01
    assert at_chance_flag(0.92, 0.9, "accuracy", "test", "ants") is None
    flag = at_chance_flag(0.91, 0.9, "accuracy", "test", "ants")  # 91 of 100 against 90 of 100: at the margin
    assert flag is not None and flag["flag"] == "at-chance"
    assert flag["message"].startswith("test accuracy 0.9100 is not above chance (0.9000, always predicting 'ants'")
    assert at_chance_flag(0.0, 0.0, "entity_f1", "validation", "O")["message"].startswith("validation entity_f1 0.0000")
    assert at_chance_flag(0.3, 0.5, "accuracy", "test", "a") is not None  # below chance counts too


def test_run_flags_are_listed_in_a_fixed_order_and_printed_as_warnings():
    flags = run_flags("predicts 'a' for all 4 examples", 0.5, 0.5, "accuracy", "test", "a")
    assert [f["flag"] for f in flags] == ["one-class", "at-chance"]
    assert run_flags(None, 0.95, 0.5, "accuracy", "test", "a") == []
    lines = warning_lines(flags)
    assert len(lines) == 2 and all(line.startswith("tunelab: warning: ") and "\n" not in line for line in lines)
    assert lines[0].startswith("tunelab: warning: one-class: the best model predicts 'a'")


def test_an_all_o_ner_model_is_flagged_with_chance_zero_through_the_real_scorer(tmp_path):
    """A real tiny-bert NER model whose head says O everywhere: entity F1 0, chance 0, both flags."""
    from accelerate import Accelerator

    from tunelab.runs.evaluate import score_once
    from tunelab.runs.loaders import make_loader
    from tunelab.runs.prepare import prepare

    examples = read_conll(write_conll(tmp_path / "ner.txt"))
    task = get_task("token-classification")
    plan = prepare("tiny-bert", "none", len(examples.classes), task="token-classification")
    backbone = plan.backbone
    with torch.no_grad():
        backbone.model.head.linear.bias[examples.classes.index("O")] = 100.0
    dataset = task.dataset(examples, backbone, train=False, augment=False, max_length=None)
    loader = make_loader(dataset, 4, task.collate(backbone, None), 0)
    accelerator = Accelerator(mixed_precision="no")
    scored = score_once(accelerator, backbone.model, loader, 0, task, examples, "test", backbone, None, examples.labels)
    assert scored.metrics["entity_f1"] == 0.0 and scored.chance == 0.0
    assert scored.examples == len(examples) and scored.set_name == "test"
    assert [f["flag"] for f in scored.flags] == ["one-class", "at-chance"]
    words = sum(len(sentence) for sentence in examples.inputs)
    assert f"predicts only O for all {words} words" in scored.flags[0]["message"]


@pytest.mark.parametrize("majority", [0, 1])
def test_chance_of_a_classification_set_is_the_share_of_the_majority_training_class(majority):
    task = get_task("text-classification")
    examples = Examples(["a", "b", "c", "d"], [0, 0, 0, 1], ("x", "y"), "t")
    score = task.scorer(examples, None, None)
    chance = score(constant_logits(4, 2, majority), np.array(examples.labels))["accuracy"]
    assert chance == (0.75 if majority == 0 else 0.25)
