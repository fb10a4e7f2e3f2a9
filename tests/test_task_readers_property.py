"""Property tests: whatever a CoNLL, SemEval or JSONL file holds, the reader loads it or raises tunelab's own error."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.data.conll import read_conll
from tunelab.data.relations import read_relations
from tunelab.errors import TunelabError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

token = st.text(alphabet="ab-XO\u00e9 ", min_size=1, max_size=4).map(str.strip).filter(bool)
tag = st.sampled_from(["O", "B-PER", "I-PER", "I-LOC", "B-", "PER", "I-X-Y", "S-LOC", "o"])
conll_line = st.one_of(
    st.just(""),
    st.just("\t"),
    st.just("-DOCSTART- -X- -X- O"),
    st.builds(lambda words, t: " ".join([*words, t]), st.lists(token, max_size=3), tag),
    st.text(max_size=12),
)
marked = st.lists(st.sampled_from(["a ", "b", "<e1>", "</e1>", "<e2>", "</e2>", '"', "\t", " "]), max_size=10).map(
    "".join
)
semeval_line = st.one_of(
    st.builds(lambda i, s: f'{i}\t"{s}"', st.integers(0, 99), marked),
    st.sampled_from(["Other", "Cause-Effect(e1,e2)", "Comment:", "Comment: x", ""]),
    st.text(max_size=12),
)
span = st.one_of(
    st.lists(st.integers(-2, 12), min_size=0, max_size=3),
    st.fixed_dictionaries({"start": st.integers(-1, 9), "end": st.integers(-1, 9)}),
    st.text(max_size=3),
    st.none(),
    st.floats(allow_nan=True),
)
record = st.one_of(
    st.fixed_dictionaries(
        {"text": st.one_of(st.text(max_size=10), st.integers()), "head": span, "tail": span},
        optional={"label": st.one_of(st.sampled_from(["Other", "R(e1,e2)", ""]), st.integers(), st.none())},
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=4),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    ),
)
jsonl_line = st.one_of(record.map(json.dumps), st.text(max_size=12), st.just(""))


def _load(reader, content: str | bytes, suffix: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        try:
            examples = reader(path)
        except TunelabError:
            return None
    assert len(examples) == len(examples.labels) > 0
    return examples


@SETTINGS
@given(st.lists(conll_line, max_size=25))
def test_any_conll_file_loads_or_raises_a_tunelab_error(lines):
    examples = _load(read_conll, "\n".join(lines), ".txt")
    if examples is not None:
        for words, labels in zip(examples.inputs, examples.labels):
            assert len(words) == len(labels) > 0
            tags = [examples.classes[i] for i in labels]
            assert all(t == "O" or (t[:2] in ("B-", "I-")) for t in tags)
            assert all(
                not t.startswith("I-") or (i > 0 and tags[i - 1][2:] == t[2:] and tags[i - 1] != "O")
                for i, t in enumerate(tags)
            )


@SETTINGS
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_arbitrary_text_or_bytes_never_crash_the_conll_reader(content):
    _load(read_conll, content, ".conll")


@SETTINGS
@given(st.lists(semeval_line, max_size=16))
def test_any_semeval_file_loads_or_raises_a_tunelab_error(lines):
    examples = _load(read_relations, "\n".join(lines), ".txt")
    if examples is not None:
        for relation in examples.inputs:
            for start, end in (relation.head, relation.tail):
                assert 0 <= start < end <= len(relation.text)
            assert "<e1>" not in relation.text or relation.text.count("<e1>") == 0


@SETTINGS
@given(st.lists(jsonl_line, max_size=8))
def test_any_jsonl_relation_file_loads_or_raises_a_tunelab_error(lines):
    examples = _load(read_relations, "\n".join(lines), ".jsonl")
    if examples is not None:
        for relation in examples.inputs:
            (hs, he), (ts, te) = relation.head, relation.tail
            assert 0 <= hs < he <= len(relation.text) and 0 <= ts < te <= len(relation.text)
            assert he <= ts or te <= hs  # spans never overlap


@SETTINGS
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_arbitrary_text_or_bytes_never_crash_the_relation_reader(content):
    _load(read_relations, content, ".txt")
    _load(read_relations, content, ".jsonl")
