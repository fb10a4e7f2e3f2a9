"""Relation classification: entity markers around the two entities, a head over the marker representations.

The entities are wrapped in marker tokens, `[E1] head [/E1]` and `[E2] tail [/E2]`, added to the
tokenizer as special tokens, and the head classifies the concatenated hidden states of the two opening
markers: the "entity markers, entity start" variant of Baldini Soares et al. 2019 (matching the blanks),
which does at least as well as R-BERT's pooled entity spans. The markers' embeddings are new, so they
train under every strategy: they live in a small table beside the (possibly frozen) vocabulary and form
their own parameter group, so a `none` run still only stores a head and four vectors.

Score: the SemEval-2010 Task 8 official measure, macro-averaged F1 over the relation types without
their direction and without `Other`, where a prediction counts only when its direction is right too
(the scorer's "(9+1)-way with directionality taken into account").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tunelab.data import Examples
from tunelab.data.relations import Relation, parse_marked, parse_record, read_relations
from tunelab.data.text import clip_text
from tunelab.errors import TunelabError
from tunelab.models.contract import TokenState
from tunelab.strategies import ParamGroup, Plan
from tunelab.tasks.base import Task, task_loss, token_limit
from tunelab.tasks.classification import TopLabels
from tunelab.tasks.metrics import ClassificationReport, accuracy, classification_report, macro_f1, top_k

MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
NEGATIVE = "Other"
"""The label that means "no relation": left out of the official average."""
DIRECTION = re.compile(r"\(e[12],e[12]\)$")


def relation_type(label: str) -> str:
    """'Cause-Effect(e2,e1)' -> 'Cause-Effect'."""
    return DIRECTION.sub("", label)


def mark(relation: Relation) -> str:
    """The text with marker tokens around the head ([E1]..[/E1]) and the tail ([E2]..[/E2])."""
    (hs, he), (ts, te) = relation.head, relation.tail
    # at one position a closing marker goes before an opening one (adjacent entities)
    cuts = sorted([(hs, 1, "[E1] "), (he, 0, " [/E1]"), (ts, 1, "[E2] "), (te, 0, " [/E2]")])
    pieces, position = [], 0
    for at, _, marker in cuts:
        pieces += [relation.text[position:at], marker]
        position = at
    pieces.append(relation.text[position:])
    return "".join(pieces)


def official_f1(gold: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Macro-F1 over relation types (direction stripped, `Other` excluded); correct means the exact directed label.

    For each type: precision = exact hits / predictions of the type (either direction), recall = exact
    hits / gold examples of the type (either direction); a wrong direction is thus a miss on both sides.
    """
    kinds = np.array([relation_type(c) for c in classes])
    types = sorted({k for k in kinds if k != NEGATIVE})
    per_type = {}
    for t in types:
        hits = int(np.sum((gold == predicted) & (kinds[gold] == t)))
        n_pred, n_gold = int(np.sum(kinds[predicted] == t)), int(np.sum(kinds[gold] == t))
        p = hits / n_pred if n_pred else 0.0
        r = hits / n_gold if n_gold else 0.0
        per_type[t] = 2 * p * r / (p + r) if p + r else 0.0
    return (float(np.mean(list(per_type.values()))) if per_type else 0.0), per_type


class MarkerEmbedding(nn.Module):
    """A vocabulary embedding plus a small trainable table for tokens appended after it (the markers)."""

    def __init__(self, base: nn.Embedding, extra: int):
        super().__init__()
        self.base = base
        self.size = base.num_embeddings
        # start the markers at the mean word vector: inside the distribution the encoder was trained on
        start = base.weight.detach().mean(0, keepdim=True).repeat(extra, 1)
        self.extra = nn.Parameter(start + 0.02 * torch.randn_like(start))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors = self.base(ids.clamp(max=self.size - 1))
        is_extra = ids >= self.size
        if not bool(is_extra.any()):
            return vectors
        extra = self.extra[(ids - self.size).clamp(0, self.extra.shape[0] - 1)].to(vectors.dtype)
        return torch.where(is_extra.unsqueeze(-1), extra, vectors)


class EntityStartHead(nn.Module):
    """[h(E1 start); h(E2 start)] -> dropout -> linear."""

    def __init__(self, num_features: int, num_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * num_features, num_outputs)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, state: TokenState) -> torch.Tensor:
        if state.entity_starts is None:
            raise TunelabError("relation classification needs entity marker positions in the batch")
        rows = torch.arange(state.hidden.shape[0], device=state.hidden.device).unsqueeze(1)
        pair = state.hidden[rows, state.entity_starts]  # (batch, 2, hidden)
        return self.linear(self.dropout(pair.flatten(1)))


class RelationDataset(Dataset):
    """Marked, tokenized sentences and the positions of their [E1] and [E2] tokens ([CLS]'s 0 if truncated away)."""

    def __init__(self, examples: Examples, tokenizer, max_length: int):
        self._labels = list(examples.labels)
        marked = [clip_text(mark(r), max_length) for r in examples.inputs]  # bounded before tokenising
        encoded = tokenizer(marked, truncation=True, max_length=max_length) if marked else {"input_ids": []}
        e1, e2 = tokenizer.convert_tokens_to_ids(["[E1]", "[E2]"])
        self.items = []
        for i, ids in enumerate(encoded["input_ids"]):
            starts = [ids.index(m) if m in ids else 0 for m in (e1, e2)]
            self.items.append(({k: v[i] for k, v in encoded.items()}, starts))

    @property
    def labels(self) -> list[int]:
        return self._labels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        encoding, starts = self.items[index]
        return (encoding, starts), self._labels[index]


@dataclass(frozen=True)
class PadRelations:
    """Collate: pad encodings to the longest in the batch and stack the entity start positions."""

    pad_id: int

    def __call__(self, batch):
        longest = max(len(e["input_ids"]) for (e, _), _ in batch)
        keys = batch[0][0][0].keys()
        fill = {"input_ids": self.pad_id}
        inputs = {
            k: torch.tensor([e[k] + [fill.get(k, 0)] * (longest - len(e[k])) for (e, _), _ in batch]) for k in keys
        }
        inputs["entity_starts"] = torch.tensor([starts for (_, starts), _ in batch])
        return inputs, torch.tensor([label for _, label in batch])


@dataclass(frozen=True)
class RelationReport:
    """The official score, per-type F1, and the full directed classification report."""

    official_f1: float
    """Macro-F1 over relation types without Other, direction-aware (SemEval-2010 Task 8's official score)."""
    per_type: dict[str, float]
    """F1 of each relation type (direction-aware)."""
    classification: ClassificationReport
    """Accuracy, macro-F1 and the confusion matrix over the directed labels."""

    def to_dict(self) -> dict[str, Any]:
        return {"official_f1": self.official_f1, "per_type_f1": self.per_type, **self.classification.to_dict()}

    def format(self) -> str:
        width = max(len(t) for t in self.per_type) if self.per_type else 4
        types = f"{len(self.per_type)} relation types, directed, without {NEGATIVE}"
        lines = [f"official macro-F1 {self.official_f1:.3f} ({types})"]
        lines += [f"  {t:<{width}}  F1 {f:.3f}" for t, f in self.per_type.items()]
        return "\n".join([*lines, "", self.classification.format()])


class RelationClassification(Task):
    """SemEval-2010 Task 8 files or JSONL with spans -> a directed relation label per entity pair."""

    name = "relation-classification"
    modality = "text"
    metric = "official_f1"

    def read(self, path, classes, config):
        return read_relations(Path(path), classes)

    def adapt(self, backbone, num_outputs):
        tokenizer = backbone.input.tokenizer
        if backbone.word_embeddings is None:
            raise TunelabError(f"{backbone.name} has no token embedding table to add entity markers to")
        new = [m for m in MARKERS if m not in tokenizer.get_vocab()]
        tokenizer.add_tokens(list(MARKERS), special_tokens=True)
        first = tokenizer.convert_tokens_to_ids(MARKERS[0])
        if new and first != backbone.word_embeddings.num_embeddings:
            raise TunelabError(
                f"{backbone.name}: the tokenizer has {first} tokens before the markers but the model "
                f"embeds {backbone.word_embeddings.num_embeddings}; cannot append marker embeddings"
            )
        owner, attribute = _owner(backbone.model, backbone.word_embeddings)
        setattr(owner, attribute, MarkerEmbedding(backbone.word_embeddings, len(MARKERS)))
        backbone.model.head = EntityStartHead(backbone.num_features, num_outputs)
        backbone.num_outputs = num_outputs

    def finish(self, plan: Plan) -> Plan:
        """The marker table trains under every strategy, at the head's learning rate, in a group of its own."""
        modules = plan.backbone.model.named_modules()
        named = [(f"{n}.extra", m.extra) for n, m in modules if isinstance(m, MarkerEmbedding)]
        for _, p in named:
            p.requires_grad_(True)
        ids = {id(p) for _, p in named}
        groups = []
        for g in plan.groups:
            kept = [(n, p) for n, p in zip(g.names, g.params) if id(p) not in ids]
            if kept:
                groups.append(ParamGroup(g.name, tuple(n for n, _ in kept), tuple(p for _, p in kept), g.lr_scale))
        markers = ParamGroup("markers", tuple(n for n, _ in named), tuple(p for _, p in named), 1.0)
        return Plan(plan.strategy, plan.backbone, [*groups, markers], plan.inserted)

    def dataset(self, examples, backbone, train, augment, max_length):
        return RelationDataset(examples, backbone.input.tokenizer, token_limit(backbone, max_length))

    def collate(self, backbone, max_length):
        return PadRelations(backbone.input.tokenizer.pad_token_id or 0)

    def scorer(self, examples, backbone, max_length):
        def score(logits, labels):
            predicted = logits.argmax(-1).numpy()
            return {
                "official_f1": official_f1(labels, predicted, examples.classes)[0],
                "accuracy": accuracy(labels, predicted),
                "macro_f1": macro_f1(labels, predicted, len(examples.classes)),  # every class, Other too (--metric)
            }

        return score

    def report(self, examples, backbone, max_length, logits, labels):
        predicted = logits.argmax(-1).numpy()
        score, per_type = official_f1(labels, predicted, examples.classes)
        loss = float(task_loss(logits, torch.from_numpy(labels)))
        return RelationReport(score, per_type, classification_report(labels, predicted, examples.classes, loss=loss))

    def inputs(self, items, classes):
        relations = []
        for i, item in enumerate(items, 1):
            try:
                is_json = item.lstrip().startswith("{")
                relations.append(parse_record(json.loads(item))[0] if is_json else parse_marked(item))
            except (ValueError, TunelabError) as e:
                raise TunelabError(
                    f"input {i}: {e}; write a sentence with <e1>..</e1> and <e2>..</e2>, or a JSON "
                    'object {"text": ..., "head": [s, e], "tail": [s, e]}'
                ) from None
        return Examples(relations, [0] * len(relations), classes, "command line")

    def predictions(self, items, examples, backbone, max_length, logits, classes, k):
        ranked = top_k(logits.softmax(-1).numpy(), classes, k)
        return [TopLabels(item, labels) for item, labels in zip(items, ranked)]


def _owner(model: nn.Module, target: nn.Module) -> tuple[nn.Module, str]:
    """The module holding `target` as a direct child, and the child's name."""
    for module in model.modules():
        for name, child in module.named_children():
            if child is target:
                return module, name
    raise TunelabError("the token embedding table is not part of the model")
