"""NER pieces on hand-made cases: IOB1 -> BIO, the CoNLL reader, sub-word alignment, entity-level scores."""

from __future__ import annotations

import pytest

from task_fixtures import write_conll
from tunelab.data.conll import read_conll, to_bio
from tunelab.errors import DataError
from tunelab.models.families.tiny import tiny_tokenizer
from tunelab.tasks.base import IGNORE
from tunelab.tasks.entities import entities, entity_report
from tunelab.tasks.token_classification import align, tags_of_words


def test_iob1_becomes_bio_and_bio_stays_as_it_is():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG"]
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG"]
    assert to_bio(iob1) == bio
    assert to_bio(bio) == bio


def test_the_reader_skips_docstart_splits_on_blank_lines_and_normalises_iob1(tmp_path):
    path = tmp_path / "iob1.txt"
    path.write_text(
        "-DOCSTART- -X- O O\n\nJohn NNP I-NP I-PER\nSmith NNP I-NP I-PER\nleft VBD I-VP O\n\t\n"
        "Paris NNP I-NP I-LOC\nLondon NNP I-NP B-LOC\n"
    )
    ex = read_conll(path)
    assert ex.inputs == [["John", "Smith", "left"], ["Paris", "London"]]
    assert ex.classes == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    assert [[ex.classes[t] for t in tags] for tags in ex.labels] == [["B-PER", "I-PER", "O"], ["B-LOC", "B-LOC"]]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("john X B-PER", "expected 4 columns"),
        ("john X X PER", "not in the IOB/BIO scheme"),
        ("john X X S-PER", "not in the IOB/BIO scheme"),
    ],
)
def test_bad_lines_are_reported_with_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.txt"
    path.write_text(f"paris X X B-LOC\n\n{line}\n")
    with pytest.raises(DataError, match=problem) as error:
        read_conll(path)
    assert error.value.path == path and error.value.line == 3


def test_an_entity_type_unseen_in_training_is_an_error_at_its_line(tmp_path):
    train = read_conll(write_conll(tmp_path / "train.txt"))
    val = tmp_path / "val.txt"
    val.write_text("john X X B-PER\nfilm X X B-MISC\n")
    with pytest.raises(DataError, match="B-MISC' was not seen in training") as error:
        read_conll(val, train.classes)
    assert error.value.line == 2


def test_subword_alignment_labels_first_subtokens_and_round_trips():
    tokenizer = tiny_tokenizer()
    # 'visitedx' -> visited ##x, 'parisyz' -> paris ##y ##z
    sentences = [["john", "visitedx", "parisyz"], ["acme", "corp"]]
    tags = [[3, 0, 1], [5, 6]]
    aligned = align(tokenizer, sentences, tags, max_length=32)
    first = aligned[0]
    tokens = tokenizer.convert_ids_to_tokens(first.encoding["input_ids"])
    assert tokens == ["[CLS]", "john", "visited", "##x", "paris", "##y", "##z", "[SEP]"]
    assert first.labels == [IGNORE, 3, 0, IGNORE, 1, IGNORE, IGNORE, IGNORE]
    for a, words, word_tags in zip(aligned, sentences, tags):
        recovered = [label for label in a.labels if label != IGNORE]
        assert recovered == word_tags and a.words == list(range(len(words)))
        classes = tuple(str(i) for i in range(7))
        assert tags_of_words(a, len(words), recovered, classes) == [str(t) for t in word_tags]


def test_words_cut_off_by_max_length_get_no_label_and_count_as_o():
    tokenizer = tiny_tokenizer()
    [a] = align(tokenizer, [["john", "visited", "paris", "london"]], [[3, 0, 1, 1]], max_length=4)
    assert a.words == [0, 1] and [x for x in a.labels if x != IGNORE] == [3, 0]
    assert tags_of_words(a, 4, [3, 0], ("O", "B-LOC", "I-LOC", "B-PER")) == ["B-PER", "O", "O", "O"]


def test_chunks_follow_the_conlleval_rules():
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert entities(["O", "I-PER", "I-PER"]) == [("PER", 1, 3)]  # I after O opens an entity
    assert entities(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]  # a type change opens one
    assert entities(["B-PER", "B-PER"]) == [("PER", 0, 1), ("PER", 1, 2)]


def test_entity_scores_on_hand_made_cases():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    report = entity_report(gold, predicted)
    # gold: PER, LOC, ORG; predicted: PER, ORG(wrong place), ORG, LOC(wrong place): 2 right of 4 predicted, of 3 gold
    assert report.overall.precision == pytest.approx(2 / 4) and report.overall.recall == pytest.approx(2 / 3)
    assert report.overall.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    by_type = {s.name: s for s in report.per_type}
    assert (by_type["PER"].f1, by_type["LOC"].f1, by_type["LOC"].support) == (1.0, 0.0, 1)
    assert by_type["ORG"].precision == 0.5 and by_type["ORG"].recall == 1.0
    assert report.token_accuracy == pytest.approx(4 / 6)


def test_a_wrong_boundary_is_a_miss_and_a_perfect_tagging_scores_one():
    gold = [["B-PER", "I-PER", "O"]]
    assert entity_report(gold, [["B-PER", "O", "O"]]).overall.f1 == 0.0
    assert entity_report(gold, gold).overall.f1 == 1.0
    assert entity_report([["O", "O"]], [["O", "O"]]).overall.f1 == 0.0  # nothing to find: no credit, no error
