"""benchmarks/text_peers.py's conll-docs corpus: documents rebuilt from CoNLL column lines, the sports label read
from the headline's Reuters slug, and the headline kept out of the text, on a few in-memory lines (no model)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

LINES = """-DOCSTART- -X- -X- O

SOCCER NN B-NP O
- : O O
JAPAN NNP B-NP B-LOC
WIN VB B-VP O
. . O O

TOKYO NNP B-NP B-LOC
1996-12-06 CD I-NP O

Japan NNP B-NP B-LOC
won VBD B-VP O
. . O O

-DOCSTART- -X- -X- O

Finns NNPS B-NP B-MISC
hold VBP B-VP O
two CD B-NP O
men NNS I-NP O
. . O O

HELSINKI NNP B-NP B-LOC
-DOCSTART- -X- -X- O

-DOCSTART- -X- -X- O

Lone NNP B-NP O
headline NN I-NP O
""".splitlines()


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # text_peers imports bench_common as the scripts do
    try:
        spec = importlib.util.spec_from_file_location("text_peers", BENCHMARKS / "text_peers.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["text_peers"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_documents_split_at_docstart_and_sentences_at_blank_lines(bench):
    documents = bench.conll_documents(LINES)
    assert documents == [
        [["SOCCER", "-", "JAPAN", "WIN", "."], ["TOKYO", "1996-12-06"], ["Japan", "won", "."]],
        [["Finns", "hold", "two", "men", "."], ["HELSINKI"]],  # the last sentence needs no blank line after it
        [["Lone", "headline"]],  # an empty document between two -DOCSTART- lines is dropped
    ]


def test_the_headline_labels_the_document_and_is_left_out_of_its_text(bench):
    sports, other, lone = bench.conll_documents(LINES)
    document = bench.labelled_document(sports)
    assert (document.label, document.slug) == ("sports", "SOCCER")
    assert document.text == "TOKYO 1996-12-06 Japan won ."
    assert "SOCCER" not in document.text
    assert bench.labelled_document(other) == bench.Document("HELSINKI", "other", None)
    assert bench.labelled_document(lone) is None  # nothing left once the headline is dropped


@pytest.mark.parametrize(
    ("headline", "slug", "sports"),
    [
        ("SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .", "SOCCER", True),
        ("Tennis - Sampras through .", "TENNIS", True),
        ("NHL ICE HOCKEY - STANDINGS AFTER THURSDAY 'S GAMES .", "NHL ICE HOCKEY", True),
        ("NFL AMERICAN FOOTBALL-COLTS CLOBBER EAGLES TO STAY IN PLAYOFF HUNT .", "NFL AMERICAN FOOTBALL", True),
        ("Rugby league-Australian rugby league results .", "RUGBY LEAGUE", True),
        ("BASKETBALLSOCCER - RESULTS .", "BASKETBALLSOCCER", True),  # glued in the data; still a sport
        ("PRESS DIGEST - Iraq - Aug 22 .", "PRESS DIGEST", False),
        ("FAR EAST GOLD - prices .", "FAR EAST GOLD", False),  # gold, not golf
        ("BRIGHT-BELGIANS SPEED AFTER SCHUMACHER 'S WIN .", "BRIGHT", False),  # the desk decides, not the story
        ("U.S. Midwest hog market seen steady Tuesday - USDA .", None, False),  # a headline, not a slug
        ("School football player banned for slashing opponents .", None, False),
        ("Ex-minister , son killed in Central Africa unrest .", None, False),
    ],
)
def test_slug_rule(bench, headline, slug, sports):
    assert bench.reuters_slug(headline) == slug
    assert bench.is_sports(bench.reuters_slug(headline)) is sports


def test_long_documents_keeps_those_with_enough_tokens_and_counts_all(bench, tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(LINES) + "\n")

    def words(texts):
        return [len(text.split()) for text in texts]

    kept, counts = bench.long_documents([path], words, min_tokens=3)
    assert counts == [5, 1]  # the two documents with a body
    assert [d.label for d in kept] == ["sports"]
    written = bench.write_tsv(tmp_path / "out.tsv", kept).read_text()
    assert written == "sentence\tlabel\nTOKYO 1996-12-06 Japan won .\tsports\n"
