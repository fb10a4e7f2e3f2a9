"""Entity-level precision, recall and F1 (seqeval's default mode, i.e. the conlleval rules), in plain Python.

An entity counts as found only when its type and its exact token span match a gold entity; token-level
accuracy would reward a model for the many `O` tokens. Chunks are read from tag sequences the way
conlleval and seqeval (default, non-strict mode) read them, so an `I-X` after `O` or after another
type opens an entity instead of being dropped: that is how the scores of published NER results are made.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    if tag == "O" or len(tag) < 2 or tag[1] != "-":
        return "O", ""
    return tag[0], tag[2:]


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of every chunk in a BIO/IOB1 tag sequence, end exclusive (conlleval rules)."""
    found = []
    start: int | None = None
    prev_prefix, prev_type = "O", ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, kind = _split(tag)
        ends = prev_prefix != "O" and (prefix in ("B", "O") or kind != prev_type)
        if ends and start is not None:
            found.append((prev_type, start, i))
            start = None
        begins = prefix == "B" or (prefix == "I" and (prev_prefix == "O" or kind != prev_type))
        if begins:
            start = i
        prev_prefix, prev_type = prefix, kind
    return found


@dataclass(frozen=True)
class EntityScore:
    """Scores for one entity type, or for all of them (micro-averaged)."""

    name: str
    """Entity type, or 'overall'."""
    precision: float
    """Predicted entities that are exactly right, as a fraction of predicted entities (0 when none)."""
    recall: float
    """Gold entities found exactly, as a fraction of gold entities (0 when none)."""
    f1: float
    """2PR / (P + R), 0 when both are 0."""
    support: int
    """Gold entities of this type."""


def _score(name: str, correct: int, predicted: int, gold: int) -> EntityScore:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return EntityScore(name, p, r, 2 * p * r / (p + r) if p + r else 0.0, gold)


@dataclass(frozen=True)
class EntityReport:
    """Entity-level scores on an evaluation set (the `tunelab eval` output for token classification)."""

    overall: EntityScore
    """Micro-averaged over every entity: the CoNLL-2003 headline F1."""
    per_type: tuple[EntityScore, ...]
    """One entry per entity type occurring in gold or predictions, sorted by name."""
    token_accuracy: float
    """Fraction of words tagged correctly (O included)."""
    sentences: int
    """Sentences evaluated."""
    loss: float | None = None
    """Mean token loss, when computed."""

    def to_dict(self) -> dict[str, Any]:
        def row(s: EntityScore) -> dict[str, Any]:
            return {"name": s.name, "precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}

        return {
            "entity_f1": self.overall.f1,
            "precision": self.overall.precision,
            "recall": self.overall.recall,
            "token_accuracy": self.token_accuracy,
            "sentences": self.sentences,
            "loss": self.loss,
            "per_type": [row(s) for s in self.per_type],
        }

    def format(self) -> str:
        o = self.overall
        header = (
            f"entity F1 {o.f1:.3f}  precision {o.precision:.3f}  recall {o.recall:.3f}  "
            f"token accuracy {self.token_accuracy:.3f}  sentences {self.sentences}"
        )
        if self.loss is not None:
            header += f"  loss {self.loss:.4g}"
        width = max([len("type"), *(len(s.name) for s in self.per_type), len("overall")])
        lines = [header, "", f"{'type':<{width}}  precision  recall     F1  support"]
        for s in [*self.per_type, o]:
            lines.append(f"{s.name:<{width}}  {s.precision:>9.3f}  {s.recall:>6.3f}  {s.f1:>5.3f}  {s.support:>7}")
        return "\n".join(lines)


def entity_report(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], loss: float | None = None
) -> EntityReport:
    """Compare gold and predicted tag sequences sentence by sentence (equal lengths required)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    correct, n_pred, n_gold = Counter(), Counter(), Counter()
    right_tokens = total_tokens = 0
    for g, p in zip(gold, predicted):
        if len(g) != len(p):
            raise ValueError(f"a sentence has {len(g)} gold tags but {len(p)} predicted")
        gold_set, pred_set = set(entities(g)), set(entities(p))
        n_gold.update(t for t, _, _ in gold_set)
        n_pred.update(t for t, _, _ in pred_set)
        correct.update(t for t, _, _ in gold_set & pred_set)
        right_tokens += sum(a == b for a, b in zip(g, p))
        total_tokens += len(g)
    types = sorted(set(n_gold) | set(n_pred))
    per_type = tuple(_score(t, correct[t], n_pred[t], n_gold[t]) for t in types)
    overall = _score("overall", sum(correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    return EntityReport(overall, per_type, right_tokens / total_tokens if total_tokens else 0.0, len(gold), loss)
