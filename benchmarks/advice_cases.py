"""The advisor's case suite: (model, dataset, training-set size) cases, their data, and which half each is in.

A case is what a user brings to `tunelab advise`: a model and a labelled training set of some size. Its
ground truth (`benchmarks/advice_ground_truth.py`) is a fair `tunelab compare` of the candidate strategies
on that training set, scored on a test set the advisor never sees. The cases are split **by dataset** into
a tuning half (any threshold or learned part of the advisor may be fitted on these) and an evaluation
half (only scored): the same dataset at two sizes in both halves would leak what the dataset is like.
The split below was fixed before any ground truth was computed.

Datasets (provenance in ../shared/datasets/README.md unless said otherwise):
- hymenoptera: ants vs bees photos, an ImageNet subset: the case *close* to the CNNs' source.
- fashion-mnist: Zalando's 28x28 grey product images (Debian `dataset-fashion-mnist`, MIT): far from ImageNet.
- digits: UCI 8x8 handwritten digits as shipped by scikit-learn (CC BY 4.0): far from ImageNet, tiny images.
- sst2: movie-review sentiment (GLUE SST-2); close to MiniLM's sentence-embedding training.
- semeval: SemEval-2010 Task 8 relations as sentence classification (markers kept in the text, direction
  dropped: 10 classes).
- conll2003: English news NER (token classification).
- wnut17: NER on tweets, emerging and rare entities (token classification).
Small images are upsampled to `image_size` pixels (96 for the 28x28 and 8x8 sets: a 224-pixel input would
cost 5x the compute for an upsampled 8x8 scan and change no conclusion of a comparison between strategies).
Test sets are drawn once per dataset (seed 0), disjoint from every training subset.

Run `python benchmarks/advice_cases.py --out DIR` to write every case's data and print the table of cases.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "datasets"
FASHION = Path("/usr/share/datasets/fashion-mnist")
TEST_SIZE = 500
"""Test examples per dataset (hymenoptera: its whole val folder, 153 images)."""

TUNING = ("fashion-mnist", "sst2", "conll2003")
"""Datasets whose cases the advisor may be fitted on."""
EVALUATION = ("hymenoptera", "digits", "semeval", "wnut17")
"""Datasets whose cases are only scored."""


@dataclass(frozen=True)
class Case:
    """One (model, dataset, training-set size) point; every strategy of its comparison gets the same budget."""

    model: str
    dataset: str
    train_size: int
    """Training examples (sentences for NER), stratified by class; validation is split off these by compare."""
    epochs: int
    image_size: int | None = None
    """Image side the model sees; None = the model's own (224)."""

    @property
    def name(self) -> str:
        short = {"mobilenet_v2": "mnv2", "efficientnet_lite0": "lite0", "minilm-l6": "minilm"}[self.model]
        return f"{short}-{self.dataset}-{self.train_size}"

    @property
    def half(self) -> str:
        return "tuning" if self.dataset in TUNING else "evaluation"


TEXT_STEPS = 75
"""Optimizer steps every text case trains for at least: what 3 epochs of 1000 examples take (800 after the
validation split, batch 32). At 3 epochs the 100- and 200-example cases took 9-15 steps, and on them most
strategies ended at entity F1 0.000 (conll2003-200: four of six; wnut17-200: five of six): a comparison of
strategies that had not started to learn, not of what they learn."""


def text_epochs(train_size: int, batch_size: int = 32, val_fraction: float = 0.2) -> int:
    """Epochs that give a text case at least TEXT_STEPS optimizer steps, and never fewer than 3 (compare's
    defaults: batch 32, a fifth of the training set split off for validation)."""
    steps = math.ceil(round(train_size * (1 - val_fraction)) / batch_size)
    return max(3, math.ceil(TEXT_STEPS / steps))


def _cases() -> tuple[Case, ...]:
    cases = []
    for model in ("mobilenet_v2", "efficientnet_lite0"):
        cases += [Case(model, "hymenoptera", n, 5) for n in (40, 100, 196)]
        cases += [Case(model, "fashion-mnist", n, 4, 96) for n in (100, 400, 1000)]
        cases += [Case(model, "digits", n, 4, 96) for n in (100, 400, 1000)]
    cases += [Case("minilm-l6", "sst2", n, text_epochs(n)) for n in (100, 1000, 3000)]
    cases += [Case("minilm-l6", "semeval", n, text_epochs(n)) for n in (200, 1000, 3000)]
    cases += [Case("minilm-l6", "conll2003", n, text_epochs(n)) for n in (200, 1000)]
    cases += [Case("minilm-l6", "wnut17", n, text_epochs(n)) for n in (200, 1000)]
    return tuple(sorted(cases, key=lambda c: (c.train_size * (3 if c.image_size is None else 1), c.name)))


CASES = _cases()
"""Cheapest first, so an interrupted suite has its cheap cases done."""


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class CaseData:
    train: Path
    test: Path


def _stratified(labels: list, size: int, seed: int = 0, exclude: set[int] = frozenset()) -> list[int]:
    """Indices of a stratified sample of `size` (proportional per class, at least 2 each), sorted."""
    rng = random.Random(seed)
    by_class: dict = {}
    for i, y in enumerate(labels):
        if i not in exclude:
            by_class.setdefault(y, []).append(i)
    total = sum(len(v) for v in by_class.values())
    picked = []
    for members in by_class.values():
        rng.shuffle(members)
        picked += members[: max(2, round(size * len(members) / total))]
    rng.shuffle(picked)
    return sorted(picked[:size]) if len(picked) > size else sorted(picked)


def _jsonl(path: Path, texts: list[str], labels: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for t, y in zip(texts, labels):
            f.write(json.dumps({"text": t, "label": y}) + "\n")


def _semeval(path: Path) -> tuple[list[str], list[str]]:
    """Sentences (markers kept) and undirected relation labels of a SemEval-2010 Task 8 file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    texts, labels = [], []
    for i in range(0, len(lines) - 1, 4):
        texts.append(lines[i].split("\t", 1)[1].strip().strip('"'))
        labels.append(re.sub(r"\(e[12],e[12]\)$", "", lines[i + 1].strip()))
    return texts, labels


def _sst2(path: Path) -> tuple[list[str], list[str]]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    return [r[0] for r in rows], [("negative", "positive")[int(r[1])] for r in rows]


def _sentences(path: Path) -> list[str]:
    """CoNLL-style sentence blocks (document separators dropped), each block's lines kept as they are."""
    blocks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
    return [b.strip("\n") for b in blocks if b.strip() and not b.lstrip().startswith("-DOCSTART-")]


def _grey_images(dataset: str) -> tuple[tuple[np.ndarray, list[int]], tuple[np.ndarray, list[int]]]:
    """(train images, labels), (test pool images, labels) of the two grey-image datasets (classes 0..9)."""
    if dataset == "fashion-mnist":
        from tunelab.data.idx import find_idx_pair, read_idx

        train, test = read_idx(*find_idx_pair(FASHION, "train")), read_idx(*find_idx_pair(FASHION, "t10k"))
        return (np.stack(train.inputs), train.labels), (np.stack(test.inputs), test.labels)
    from sklearn.datasets import load_digits  # scikit-learn ships the data: nothing is downloaded

    digits = load_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)
    labels = [int(y) for y in digits.target]
    return (images, labels), (images, labels)


def prepare(case: Case, root: Path) -> CaseData:
    """The case's training data and its dataset's test set, written under `root` once (idempotent)."""
    root.mkdir(parents=True, exist_ok=True)
    d = case.dataset
    if d == "hymenoptera":
        from tunelab.data.images import read_image_folder

        base = root / f"hymenoptera-{case.train_size}"
        if not base.exists():
            train = read_image_folder(SHARED / "hymenoptera" / "train")
            tmp = base.with_suffix(".tmp")
            for i in _stratified(train.labels, case.train_size):
                link = tmp / train.classes[train.labels[i]] / Path(train.inputs[i]).name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(train.inputs[i]).resolve())
            tmp.rename(base)
        return CaseData(base, SHARED / "hymenoptera" / "val")
    if d in ("fashion-mnist", "digits"):
        from tunelab.data.idx import write_idx

        base, test = root / f"{d}-{case.train_size}", root / f"{d}-test"
        if base.exists() and test.exists():
            return CaseData(base, test)
        (train_x, train_y), (pool_x, pool_y) = _grey_images(d)
        test_pick = _stratified(pool_y, TEST_SIZE, seed=1)
        # digits has one pool: training subsets come from what the test set left
        exclude = set(test_pick) if d == "digits" else set()
        pick = _stratified(train_y, case.train_size, exclude=exclude)
        for folder, x, y, chosen in ((base, train_x, train_y, pick), (test, pool_x, pool_y, test_pick)):
            if not folder.exists():
                tmp = folder.with_suffix(".tmp")
                tmp.mkdir(parents=True, exist_ok=True)
                write_idx(tmp, "train", x[chosen], [y[i] for i in chosen])
                tmp.rename(folder)
        return CaseData(base, test)
    if d in ("sst2", "semeval"):
        read = _sst2 if d == "sst2" else _semeval
        train_file, test_file = root / f"{d}-{case.train_size}.jsonl", root / f"{d}-test.jsonl"
        if not train_file.exists():
            texts, labels = read(SHARED / ("sst2/train.tsv" if d == "sst2" else "semeval2010_task8/train.txt"))
            pick = _stratified(labels, case.train_size)
            _jsonl(train_file, [texts[i] for i in pick], [labels[i] for i in pick])
        if not test_file.exists():
            texts, labels = read(SHARED / ("sst2/dev.tsv" if d == "sst2" else "semeval2010_task8/test.txt"))
            pick = _stratified(labels, TEST_SIZE, seed=1)
            _jsonl(test_file, [texts[i] for i in pick], [labels[i] for i in pick])
        return CaseData(train_file, test_file)
    if d in ("conll2003", "wnut17"):
        files = {"conll2003": ("train.txt", "test.txt"), "wnut17": ("wnut17train.conll", "emerging.test.annotated")}[d]
        train_file, test_file = root / f"{d}-{case.train_size}.conll", root / f"{d}-test.conll"
        for target, source, size, seed in (
            (train_file, files[0], case.train_size, 0),
            (test_file, files[1], TEST_SIZE, 1),
        ):
            if not target.exists():
                blocks = _sentences(SHARED / d / source)
                pick = sorted(random.Random(seed).sample(range(len(blocks)), min(size, len(blocks))))
                target.write_text("\n\n".join(blocks[i] for i in pick) + "\n", encoding="utf-8")
        return CaseData(train_file, test_file)
    raise ValueError(f"unknown dataset {d}")


def _gunzip_check() -> None:
    """Fashion-MNIST must be installed (apt-get install dataset-fashion-mnist) before its cases run."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"{FASHION} is missing: sudo apt-get install dataset-fashion-mnist")
    gzip.open(FASHION / "train-labels-idx1-ubyte.gz").read(8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/advice-suite", help="folder for the cases' data (under <out>/data)")
    args = parser.parse_args()
    _gunzip_check()
    print("| case | half | model | dataset | train | epochs | image size | train data | test data |")
    print("|---|---|---|---|---:|---:|---:|---|---|")
    for case in CASES:
        data = prepare(case, Path(args.out) / "data")
        size = case.image_size or ("—" if case.model == "minilm-l6" else 224)
        print(
            f"| {case.name} | {case.half} | {case.model} | {case.dataset} | {case.train_size} | {case.epochs} "
            f"| {size} | {data.train.name} | {data.test.name} |"
        )


if __name__ == "__main__":
    main()
