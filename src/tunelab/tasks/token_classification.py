"""Named-entity recognition: a tag per word from a per-token head, scored by entity-level F1.

Words are split further by the tokenizer; each word's tag goes on its first sub-token and the others are
IGNORE (Devlin et al. 2019, section 5.3), so the loss and the scores count words, not sub-tokens. Words
cut off by `max_length` get no prediction: they are scored as `O` against their gold tags, so a
truncated sentence costs recall instead of silently vanishing from the evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tunelab.data import Examples, Splits, stratified_split
from tunelab.data.conll import read_conll
from tunelab.data.text import clip_words
from tunelab.models.contract import TokenState
from tunelab.tasks.base import IGNORE, Task, one_class, task_loss, token_limit
from tunelab.tasks.entities import entities, entity_report

WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Aligned:
    """One sentence as sub-tokens, with each word's tag on its first sub-token."""

    encoding: dict[str, list[int]]
    """Tokenizer output (input_ids, attention_mask, token_type_ids when the tokenizer makes them)."""
    labels: list[int]
    """Per sub-token: the word's tag index on its first sub-token, IGNORE elsewhere."""
    words: list[int]
    """The word index of each labelled sub-token, in order: the words the model predicts."""


def align(tokenizer, sentences: list[list[str]], tags: list[list[int]], max_length: int) -> list[Aligned]:
    """Tokenize word lists and put each word's tag on its first sub-token (the rest and specials IGNORE)."""
    if not sentences:
        return []
    clipped = [clip_words(words, max_length) for words in sentences]  # a megabyte "word" costs no more than a short one
    encoded = tokenizer(clipped, is_split_into_words=True, truncation=True, max_length=max_length)
    out = []
    for i, word_tags in enumerate(tags):
        labels, words, previous = [], [], None
        for word in encoded.word_ids(i):
            first = word is not None and word != previous
            labels.append(word_tags[word] if first else IGNORE)
            if first:
                words.append(word)
            previous = word
        out.append(Aligned({k: v[i] for k, v in encoded.items()}, labels, words))
    return out


def tags_of_words(aligned: Aligned, n_words: int, predicted: list[int], classes: tuple[str, ...]) -> list[str]:
    """Word-level tags from the predictions of a sentence's labelled sub-tokens; unpredicted words are O."""
    tags = ["O"] * n_words
    for word, label in zip(aligned.words, predicted):
        tags[word] = classes[label]
    return tags


class TokenDataset(Dataset):
    """Sentences aligned once up front (padding happens per batch in `pad_tokens`)."""

    def __init__(self, examples: Examples, tokenizer, max_length: int):
        self.aligned = align(tokenizer, examples.inputs, examples.labels, max_length)
        self.pad_id = tokenizer.pad_token_id or 0

    @property
    def labels(self) -> list[list[int]]:
        return [a.labels for a in self.aligned]

    def __len__(self) -> int:
        return len(self.aligned)

    def __getitem__(self, index: int):
        return self.aligned[index].encoding, self.aligned[index].labels


@dataclass(frozen=True)
class PadTokens:
    """Collate: pad encodings (pad id, mask 0) and labels (IGNORE) to the longest sentence in the batch."""

    pad_id: int

    def __call__(self, batch):
        longest = max(len(labels) for _, labels in batch)
        keys = batch[0][0].keys()
        fill = {"input_ids": self.pad_id}
        inputs = {k: torch.tensor([e[k] + [fill.get(k, 0)] * (longest - len(e[k])) for e, _ in batch]) for k in keys}
        labels = torch.tensor([labels + [IGNORE] * (longest - len(labels)) for _, labels in batch])
        return inputs, labels


class TokenHead(nn.Module):
    """Dropout and a linear layer on every token's hidden state: (B, T, H) -> (B, T, tags)."""

    def __init__(self, num_features: int, num_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(num_features, num_outputs)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, state: TokenState) -> torch.Tensor:
        return self.linear(self.dropout(state.hidden))


@dataclass(frozen=True)
class Entities:
    """The entities found in one input line, with character spans into it."""

    input: str
    """The line as given."""
    entities: list[tuple[str, int, int]]
    """(type, start, end) character spans, end exclusive, in order."""

    def format(self) -> str:
        found = "; ".join(f"{kind} {s}-{e} {self.input[s:e]!r}" for kind, s, e in self.entities)
        return f"{self.input}\t{found or '(no entities)'}"

    def to_dict(self) -> dict[str, Any]:
        found = [{"type": k, "start": s, "end": e, "text": self.input[s:e]} for k, s, e in self.entities]
        return {"input": self.input, "entities": found}


class TokenClassification(Task):
    """CoNLL column files (IOB1 or BIO, normalised to BIO) -> a BIO tag per word; entity-level F1."""

    name = "token-classification"
    modality = "text"
    metric = "entity_f1"
    new_weights_lr = 1e-2
    """A tag per word, most of them O: at the strategies' 1e-3 a head and adapters on a few hundred sentences
    still tag everything O after 3 epochs. Measured (MiniLM-L6, CoNLL-2003, 3 epochs, val entity F1):
    200 sentences: adapter 0.017 -> 0.485 at 1e-2, none 0.133 -> 0.292; 1000 sentences: adapter 0.408 -> 0.776.
    Strategies that train pretrained weights keep their default (they move the backbone too), and so does
    LoRA (`Strategy.edits_pretrained`): at 1e-2, 1000 sentences, it tagged everything O (test F1 0.000, 2 seeds;
    0.412 at 1e-3, 1 seed)."""

    def read(self, path, classes, config):
        return read_conll(Path(path), classes)

    def split(self, train, config) -> Splits:
        # a sentence has many labels, so the split is random: every sentence in one stratum
        train_idx, val_idx = stratified_split([0] * len(train), config.val_fraction, config.seed)
        return Splits(train.subset(train_idx), train.subset(val_idx))

    def degenerate(self, predicted, classes):
        """Only `O` for every word (no entity found at all), or one entity tag for every word."""
        if len(predicted) and all(classes[int(i)] == "O" for i in np.unique(predicted)):
            return f"predicts only O for all {len(predicted)} words: it finds no entities"
        return one_class(predicted, classes, "words")

    def adapt(self, backbone, num_outputs):
        backbone.model.head = TokenHead(backbone.num_features, num_outputs)
        backbone.num_outputs = num_outputs

    def dataset(self, examples, backbone, train, augment, max_length):
        return TokenDataset(examples, backbone.input.tokenizer, token_limit(backbone, max_length))

    def collate(self, backbone, max_length):
        return PadTokens(backbone.input.tokenizer.pad_token_id or 0)

    def _gold_and_predicted(self, examples, backbone, max_length, logits):
        aligned = align(backbone.input.tokenizer, examples.inputs, examples.labels, token_limit(backbone, max_length))
        flat = logits.argmax(-1).tolist()
        gold, predicted, offset = [], [], 0
        for words, labels, a in zip(examples.inputs, examples.labels, aligned):
            gold.append([examples.classes[t] for t in labels])
            predicted.append(tags_of_words(a, len(words), flat[offset : offset + len(a.words)], examples.classes))
            offset += len(a.words)
        return gold, predicted

    def scorer(self, examples, backbone, max_length):
        def score(logits, labels):
            report = entity_report(*self._gold_and_predicted(examples, backbone, max_length, logits))
            overall = report.overall
            return {
                "entity_f1": overall.f1,
                "precision": overall.precision,
                "recall": overall.recall,
                "token_accuracy": report.token_accuracy,
            }

        return score

    def report(self, examples, backbone, max_length, logits, labels):
        loss = float(task_loss(logits, torch.from_numpy(labels)))
        return entity_report(*self._gold_and_predicted(examples, backbone, max_length, logits), loss=loss)

    def inputs(self, items, classes):
        words = [[m.group() for m in WORD.finditer(line)] for line in items]
        return Examples(words, [[0] * len(w) for w in words], classes, "command line")

    def predictions(self, items, examples, backbone, max_length, logits, classes, k):
        _, predicted = self._gold_and_predicted(examples, backbone, max_length, logits)
        spans = [[m.span() for m in WORD.finditer(line)] for line in items]
        return [
            Entities(line, [(kind, where[s][0], where[e - 1][1]) for kind, s, e in entities(tags)])
            for line, tags, where in zip(items, predicted, spans)
        ]
