"""Relation pieces: SemEval and JSONL readers, marker insertion and positions, the official score, markers' training."""

from __future__ import annotations

import numpy as np
import pytest

from task_fixtures import write_relation_jsonl, write_semeval
from tunelab.data.relations import Relation, parse_marked, read_relations
from tunelab.errors import DataError, TunelabError
from tunelab.runs.prepare import prepare
from tunelab.strategies import REGISTRY
from tunelab.tasks.relation_classification import MARKERS, RelationDataset, mark, official_f1

SPECS = list(REGISTRY)
"""Every registered strategy at its default settings."""


def test_semeval_and_jsonl_files_read_to_the_same_examples(tmp_path):
    semeval = read_relations(write_semeval(tmp_path / "train.txt"))
    jsonl = read_relations(write_relation_jsonl(tmp_path / "train.jsonl"))
    assert semeval == type(semeval)(jsonl.inputs, jsonl.labels, jsonl.classes, semeval.source)
    first = semeval.inputs[0]
    assert first == Relation("john visited paris .", (0, 4), (13, 18))
    assert semeval.classes == ("Entity-Destination(e1,e2)", "Message-Topic(e2,e1)", "Other")


def test_markers_wrap_the_entities_and_their_positions_point_at_the_marker_tokens():
    relation = parse_marked('the <e2>film</e2> was about the <e1>city</e1> "quoted"')
    assert relation.text[slice(*relation.head)] == "city" and relation.text[slice(*relation.tail)] == "film"
    marked = mark(relation)
    assert marked == 'the [E2] film [/E2] was about the [E1] city [/E1] "quoted"'
    adjacent = Relation("ab", (0, 1), (1, 2))
    assert mark(adjacent) == "[E1] a [/E1][E2] b [/E2]"

    plan = prepare("tiny-bert", "none", 3, task="relation-classification")
    tokenizer = plan.backbone.input.tokenizer
    from tunelab.data import Examples

    dataset = RelationDataset(Examples([relation, adjacent], [0, 1], ("a", "b"), "test"), tokenizer, max_length=32)
    for ((encoding, starts), _), text in zip([dataset[0], dataset[1]], ["city", "a"]):
        tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
        assert tokens[starts[0]] == "[E1]" and tokens[starts[1]] == "[E2]"
        assert tokenizer.convert_tokens_to_string(tokens[starts[0] + 1 : tokens.index("[/E1]")]).strip() == text


@pytest.mark.parametrize(
    "content, line, problem",
    [
        ('1\t"<e1>john</e1> visited paris"\nOther\nComment:\n', 1, "missing an entity"),
        ('1\t"<e1>a</e1> <e2>b</e2>"\nOther\nComment:\n\n2\tno quotes\nOther\n', 5, "expected ID"),
        ('1\t"<e1>a</e1> <e2>b</e2>"\n\nOther\n', 2, "relation label"),
    ],
)
def test_bad_semeval_records_are_reported_with_file_and_line(tmp_path, content, line, problem):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=problem) as error:
        read_relations(path)
    assert error.value.path == path and error.value.line == line


@pytest.mark.parametrize(
    "record, problem",
    [
        ({"text": "john paris", "head": [0, 4], "label": "x"}, "missing tail"),
        ({"text": "john paris", "head": [0, 4], "tail": [3, 8], "label": "x"}, "overlap"),
        ({"text": "john paris", "head": [0, 4], "tail": [5, 99], "label": "x"}, "not a non-empty span"),
        ({"text": "john paris", "head": "0-4", "tail": [5, 10], "label": "x"}, "pair of integers"),
    ],
)
def test_bad_jsonl_records_are_reported_with_file_and_line(tmp_path, record, problem):
    import json

    path = tmp_path / "bad.jsonl"
    good = {"text": "a b", "head": [0, 1], "tail": [2, 3], "label": "x"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=problem) as error:
        read_relations(path)
    assert error.value.line == 2


def test_a_relation_unseen_in_training_is_an_error_at_its_line(tmp_path):
    train = read_relations(write_semeval(tmp_path / "train.txt"))
    val = tmp_path / "val.txt"
    val.write_text(
        '1\t"<e1>a</e1> <e2>b</e2>"\nOther\nComment:\n\n2\t"<e1>a</e1> <e2>b</e2>"\nCause-Effect(e1,e2)\nComment:\n'
    )
    with pytest.raises(DataError, match="'Cause-Effect\\(e1,e2\\)' was not seen in training") as error:
        read_relations(val, train.classes)
    assert error.value.line == 6


def test_official_score_is_direction_aware_macro_f1_without_other():
    classes = ("A(e1,e2)", "A(e2,e1)", "B(e1,e2)", "Other")
    gold = np.array([0, 0, 1, 2, 3, 3])
    predicted = np.array([0, 1, 1, 3, 2, 3])
    score, per_type = official_f1(gold, predicted, classes)
    # A: 2 exact hits; 3 predicted as A (either direction), 3 gold A -> P = R = F1 = 2/3.
    # B: 0 hits (one predicted, one gold) -> 0. Other is not averaged.
    assert per_type == pytest.approx({"A": 2 / 3, "B": 0.0})
    assert score == pytest.approx(1 / 3)
    assert official_f1(gold, gold, classes)[0] == 1.0


@pytest.mark.parametrize("spec", SPECS)
def test_marker_embeddings_train_under_every_strategy_in_a_group_of_their_own(spec):
    plan = prepare("tiny-bert", spec, 3, task="relation-classification")
    tokenizer = plan.backbone.input.tokenizer
    assert all(tokenizer.convert_tokens_to_ids(m) >= plan.backbone.word_embeddings.num_embeddings for m in MARKERS)
    groups = {g.name: g for g in plan.groups}
    assert groups["markers"].names == ("blocks.0.embeddings.word_embeddings.extra",)
    assert groups["markers"].params[0].shape == (len(MARKERS), 32) and groups["markers"].params[0].requires_grad
    grouped = [id(p) for g in plan.groups for p in g.params]
    trainable = [id(p) for p in plan.backbone.model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)


def test_predict_inputs_take_inline_tags_or_json_and_reject_the_rest():
    from tunelab.tasks import get_task

    task = get_task("relation-classification")
    examples = task.inputs(["<e1>a</e1> b <e2>c</e2>", '{"text": "a b c", "head": [0, 1], "tail": [4, 5]}'], ("x", "y"))
    assert examples.inputs[0] == examples.inputs[1] == Relation("a b c", (0, 1), (4, 5))
    with pytest.raises(TunelabError, match="input 1: the sentence is missing an entity"):
        task.inputs(["no entities here"], ("x", "y"))
