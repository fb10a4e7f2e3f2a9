"""Text tables (TSV, CSV, JSON Lines): columns, labels, classes, errors with file:line, and collation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.data.datasets import TextDataset, text_collate
from tunelab.data.examples import Examples
from tunelab.data.text import load_text, read_text_table
from tunelab.errors import DataError

SST2 = (
    "sentence\tlabel\n"
    "hide new secretions from the parental units \t0\n"
    "contains no wit , only labored gags \t0\n"
    "that loves its characters and communicates something rather beautiful about human nature \t1\n"
    "the film 's `` twist '' ending is \" obvious \" \t1\n"
    "clichés galore \t0\n"
)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_sst2_tsv_as_is(tmp_path):
    ex = read_text_table(write(tmp_path / "train.tsv", SST2))
    assert ex.inputs[0] == "hide new secretions from the parental units "
    assert ex.inputs[3] == "the film 's `` twist '' ending is \" obvious \" "
    assert ex.inputs[4] == "clichés galore "
    assert ex.labels == [0, 0, 1, 1, 0] and ex.classes == ("0", "1")
    assert ex.source == str(tmp_path / "train.tsv")


def test_txt_is_tsv_and_crlf_and_text_column(tmp_path):
    path = write(tmp_path / "data.txt", "id\ttext\tlabel\r\n1\t hello \tpos\r\n\r\n2\tbye\tneg\r\n")
    ex = read_text_table(path)
    assert ex.inputs == [" hello ", "bye"] and ex.classes == ("neg", "pos") and ex.labels == [1, 0]
    assert read_text_table(path, text_column="id").inputs == ["1", "2"]


def test_csv_quoting_and_multiline_fields(tmp_path):
    text = 'text,label\n"hello, world",a\n"two\nlines",b\nplain,a\n'
    ex = read_text_table(write(tmp_path / "d.csv", text))
    assert ex.inputs == ["hello, world", "two\nlines", "plain"] and ex.labels == [0, 1, 0]
    bad = write(tmp_path / "bad.csv", text + "x,a,extra\n")
    with pytest.raises(DataError, match="found 3; quote fields") as err:
        read_text_table(bad)
    assert str(err.value).startswith(f"{bad}:6: expected 2 comma-separated fields (text, label)")


def test_jsonl_labels_as_written(tmp_path):
    lines = [
        {"text": "a", "label": 2},
        {"text": "b", "label": 10},
        {"text": "c", "label": 1.0},  # a number by value: the class "1"
        {"text": "d", "label": 2},
    ]
    ex = read_text_table(write(tmp_path / "d.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n"))
    assert ex.classes == ("1", "2", "10") and ex.labels == [1, 2, 0, 1]


def test_classes_given_and_unseen_label(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood \t1\nbad \t0\nodd \t2\n")
    with pytest.raises(DataError) as err:
        read_text_table(path, classes=("0", "1"))
    assert str(err.value) == f"{path}:4: label '2' not seen in training; known: 0, 1"
    ex = read_text_table(path, classes=("0", "1", "2", "3"))
    assert ex.classes == ("0", "1", "2", "3") and ex.labels == [1, 0, 2]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "line", "message"),
    [
        (
            "a.tsv",
            "sentence\tlabel\nx\t0\n",
            {"text_column": "review"},
            1,
            "no column 'review'; columns are: sentence, label",
        ),
        (
            "a.tsv",
            "sentence\tlabel\nx\t0\n",
            {"label_column": "y"},
            1,
            "no label column 'y'; columns are: sentence, label",
        ),
        ("a.tsv", "review\tlabel\nx\t0\n", {}, 1, "no text column: expected one named 'sentence' or 'text'"),
        ("a.tsv", "this is a sentence \t1\nanother \t0\n", {}, 1, "no text column"),
        ("a.tsv", "sentence\tlabel\nx\t0\ny\t\n", {}, 3, "missing or empty label in column 'label'"),
        ("a.tsv", "sentence\tlabel\nx\t0\ny\t1\tz\n", {}, 3, "expected 2 tab-separated fields"),
        ("a.csv", "text,label\nx,0\n\ny\n", {}, 4, "expected 2 comma-separated fields"),
        ("a.jsonl", '{"text": "x", "label": 0}\n{"text": "y", "label": }\n', {}, 2, "invalid JSON"),
        ("a.jsonl", '{"text": "x", "label": 0}\n[1, 2]\n', {}, 2, "expected a JSON object, found list"),
        ("a.jsonl", '{"text": "x", "label": 0}\n{"label": 1}\n', {}, 2, "no field 'text' in this record"),
        ("a.jsonl", '{"text": "x", "label": 0}\n{"text": 5, "label": 1}\n', {}, 2, "'text' must be a string"),
        ("a.jsonl", '{"text": "x", "label": 0}\n{"text": "y", "label": null}\n', {}, 2, "missing or empty label"),
        ("a.tsv", b"sentence\tlabel\nok\t0\nbad \xff\xfe\t1\n", {}, 3, "are not UTF-8"),
    ],
)
def test_errors_name_file_and_line(tmp_path, name, content, kwargs, line, message):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=message) as err:
        read_text_table(path, **kwargs)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert err.value.path == path and err.value.line == line


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.tsv", "", "file is empty"),
        ("e.csv", "\n\n  \n", "file is empty"),
        ("e.tsv", "sentence\tlabel\n", "no examples after the header row"),
        ("e.parquet", "x", "unsupported file type '.parquet'"),
    ],
)
def test_file_level_errors(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=message) as err:
        read_text_table(path)
    assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(DataError, match="file not found"):
        read_text_table(tmp_path / "missing.tsv")


def test_load_text_with_and_without_val_file(tmp_path):
    train = write(tmp_path / "train.tsv", SST2)
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\nit 's a charming journey . \t1\n")
    splits = load_text(train, dev)
    assert len(splits.train) == 5 and splits.val.inputs == ["it 's a charming journey . "]
    assert splits.val.classes == ("0", "1") and splits.val.labels == [1]
    split = load_text(train, val_fraction=0.4, seed=1)
    assert sorted(split.val.labels) == [0, 1] and len(split.train) == 3
    assert set(split.train.inputs).isdisjoint(split.val.inputs)


def test_text_dataset_and_collate():
    class FakeTokenizer:
        def __init__(self, with_types):
            self.with_types, self.calls = with_types, []

        def __call__(self, texts, **kwargs):
            self.calls.append(kwargs)
            longest = min(max(len(t.split()) for t in texts), kwargs["max_length"])
            out = {
                "input_ids": torch.ones(len(texts), longest, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), longest, dtype=torch.long),
                "special_tokens_mask": torch.zeros(len(texts), longest, dtype=torch.long),
            }
            if self.with_types:
                out["token_type_ids"] = torch.zeros(len(texts), longest, dtype=torch.long)
            return out

    dataset = TextDataset(Examples(["a b c", "d"], [1, 0], ("neg", "pos"), "memory"))
    assert len(dataset) == 2 and dataset[0] == ("a b c", 1) and dataset.classes == ("neg", "pos")
    for with_types in (True, False):
        tokenizer = FakeTokenizer(with_types)
        batch, labels = text_collate(tokenizer, max_length=2)([dataset[0], dataset[1]])
        expected = {"input_ids", "attention_mask"} | ({"token_type_ids"} if with_types else set())
        assert set(batch) == expected and batch["input_ids"].shape == (2, 2)
        assert labels.tolist() == [1, 0] and labels.dtype == torch.long
        assert tokenizer.calls[0]["truncation"] is True and tokenizer.calls[0]["max_length"] == 2


_HEADS = st.sampled_from([b"", b"sentence\tlabel\n", b"text,label\n", b'{"text": "a", "label": 1}\n'])
_BODY = st.one_of(
    st.binary(max_size=120),
    st.text(alphabet=st.sampled_from('ab \t,"\n\r{}[]:\\0\x00é'), max_size=80).map(lambda s: s.encode()),
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    head=_HEADS,
    body=_BODY,
    suffix=st.sampled_from([".tsv", ".csv", ".jsonl", ".txt"]),
    text_column=st.sampled_from([None, "text", "label"]),
)
def test_arbitrary_bytes_load_or_raise_data_error(fuzz_dir, head, body, suffix, text_column):
    path = fuzz_dir / f"fuzz{suffix}"
    path.write_bytes(head + body)
    try:
        ex = read_text_table(path, text_column=text_column)
    except DataError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert len(ex) == len(ex.labels) > 0
        assert all(0 <= y < len(ex.classes) for y in ex.labels)
        assert all(isinstance(t, str) for t in ex.inputs)
