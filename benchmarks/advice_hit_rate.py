"""How often `tunelab advise` picks a strategy that `tunelab compare` confirms, and what the advice costs.

For each (model, dataset, training-set size) case: run `advise` on the training data alone (the
validation set is never shown to it), then `compare` the strategies the unbudgeted guide chooses from
(`none`, `retrain:K` with the advised K, `full`, `scratch`) on equal budgets, scored on a fixed
validation set. A case is a hit when the recommended strategy scores within `--tolerance` (1 point) of
the best one. Across cases it reports the hit rate, the mean regret (best minus recommended), the rank
correlation between the similarity score and fine-tuned accuracy, and the advice's cost as a fraction
of the `full` run it replaces.

Data: hymenoptera, SST-2 and SemEval-2010 Task 8 from ../shared/datasets; Fashion-MNIST from Debian's
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist). Subsets are stratified samples written
to `<out>/data` (validation sets from SST-2 dev, SemEval test and Fashion-MNIST t10k: see VAL_SIZE)
(SemEval as sentence classification: the sentence with its <e1>/<e2> markers kept as text, the relation
without its direction as the label, 10 classes). Everything is resumable: advice is
saved per case and `compare` skips finished runs, so re-running after an interruption continues.

Run: .venv/bin/python benchmarks/advice_hit_rate.py [--out runs/bench-advisor] [--cases mnv2-hym-20,...]
Writes benchmarks/results/advice_hit_rate.{md,json} and the table between the markers in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_common import write_table
from tunelab.advice.api import advise
from tunelab.advice.decide import Thresholds, transfer_depth
from tunelab.advice.profile import stratified_sample
from tunelab.comparison.grid import compare, planned_runs
from tunelab.comparison.results import aggregate, collect
from tunelab.data.idx import find_idx_pair, read_idx
from tunelab.data.images import read_image_folder
from tunelab.data.text import read_text_table
from tunelab.settings import CompareConfig

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "datasets"
FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)

VAL_SIZE = {"sst2": 400, "semeval": 400, "fashion-mnist": 100}
"""Stratified validation subsets (hymenoptera uses its whole val folder, 153 images): every run scores
on the same set, small enough that five evaluations per run stay a minor part of its cost."""


@dataclass(frozen=True)
class Case:
    """One (model, dataset, training-set size) point of the evaluation."""

    name: str
    model: str
    dataset: str
    """One of: hymenoptera, fashion-mnist, sst2, semeval."""
    train_size: int | None
    """Stratified training examples; None = the whole training set."""
    epochs: int
    """Epochs of every compare run of the case (equal budgets within a case)."""


CASES = (
    Case("minilm-sst2-100", "minilm-l6", "sst2", 100, 5),
    Case("minilm-semeval-200", "minilm-l6", "semeval", 200, 5),
    Case("mnv2-hym-20", "mobilenet_v2", "hymenoptera", 20, 3),
    Case("lite0-hym-20", "efficientnet_lite0", "hymenoptera", 20, 3),
    Case("mnv2-fashion-30", "mobilenet_v2", "fashion-mnist", 30, 3),
    Case("lite0-fashion-30", "efficientnet_lite0", "fashion-mnist", 30, 3),
    Case("minilm-sst2-1000", "minilm-l6", "sst2", 1000, 5),
    Case("minilm-semeval-1000", "minilm-l6", "semeval", 1000, 5),
    Case("mnv2-hym-60", "mobilenet_v2", "hymenoptera", 60, 3),
    Case("lite0-hym-60", "efficientnet_lite0", "hymenoptera", 60, 3),
    Case("mnv2-fashion-100", "mobilenet_v2", "fashion-mnist", 100, 3),
    Case("lite0-fashion-100", "efficientnet_lite0", "fashion-mnist", 100, 3),
)
"""Cheap cases first. Image cases are small and short (3 epochs) because a CNN at 224 px trains at
about 3 images/s on this shared 2-core machine; text cases run compare's default 5 epochs."""

# ---------------------------------------------------------------- data


def _jsonl(path: Path, texts: list[str], labels: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for t, y in zip(texts, labels):
            f.write(json.dumps({"text": t, "label": y}) + "\n")
    return path


def _semeval(path: Path) -> tuple[list[str], list[str]]:
    """Sentences (markers kept) and undirected relation labels of a SemEval-2010 Task 8 file."""
    lines = path.read_text().splitlines()
    texts, labels = [], []
    for i in range(0, len(lines) - 1, 4):
        sentence = lines[i].split("\t", 1)[1].strip().strip('"')
        texts.append(sentence)
        labels.append(re.sub(r"\(e[12],e[12]\)$", "", lines[i + 1].strip()))
    return texts, labels


def _sample(labels: list, size: int | None, seed: int = 0) -> list[int]:
    """Indices of a stratified sample of `size` (labels of any kind), in file order; None = all."""
    if size is None:
        return list(range(len(labels)))
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    return sorted(stratified_sample(codes.tolist(), size, seed))


def _images(root: Path, arrays: list[np.ndarray], labels: list[int]) -> Path:
    for k, (a, y) in enumerate(zip(arrays, labels)):
        target = root / FASHION_CLASSES[y] / f"{k:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(target)
    return root


def prepare(case: Case, root: Path) -> tuple[Path, Path]:
    """(train path, val path) for a case, written under `root` once."""
    base = root / f"{case.dataset}-{case.train_size or 'all'}"
    if case.dataset == "hymenoptera":
        val = SHARED / "hymenoptera" / "val"
        if case.train_size is None:
            return SHARED / "hymenoptera" / "train", val
        train = read_image_folder(SHARED / "hymenoptera" / "train")
        if not base.exists():
            for i in _sample(train.labels, case.train_size):
                link = base / train.classes[train.labels[i]] / Path(train.inputs[i]).name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(train.inputs[i]).resolve())
        return base, val
    if case.dataset == "fashion-mnist":
        train_dir, val_dir = base / "train", root / "fashion-mnist-val"
        if not train_dir.exists():
            train = read_idx(*find_idx_pair(FASHION, "train"))
            pick = _sample(train.labels, case.train_size)
            _images(train_dir, [train.inputs[i] for i in pick], [train.labels[i] for i in pick])
        if not val_dir.exists():
            test = read_idx(*find_idx_pair(FASHION, "t10k"))
            pick = _sample(test.labels, VAL_SIZE["fashion-mnist"])
            _images(val_dir, [test.inputs[i] for i in pick], [test.labels[i] for i in pick])
        return train_dir, val_dir
    if case.dataset == "sst2":
        train_file = base.with_suffix(".jsonl")
        if not train_file.exists():
            table = read_text_table(SHARED / "sst2" / "train.tsv")
            pick = _sample(table.labels, case.train_size)
            _jsonl(train_file, [table.inputs[i] for i in pick], [table.classes[table.labels[i]] for i in pick])
        val_file = root / "sst2-val.jsonl"
        if not val_file.exists():
            table = read_text_table(SHARED / "sst2" / "dev.tsv")
            pick = _sample(table.labels, VAL_SIZE["sst2"])
            _jsonl(val_file, [table.inputs[i] for i in pick], [table.classes[table.labels[i]] for i in pick])
        return train_file, val_file
    if case.dataset == "semeval":
        train_file, val_file = base.with_suffix(".jsonl"), root / "semeval-val.jsonl"
        if not train_file.exists():
            texts, labels = _semeval(SHARED / "semeval2010_task8" / "train.txt")
            pick = _sample(labels, case.train_size)
            _jsonl(train_file, [texts[i] for i in pick], [labels[i] for i in pick])
        if not val_file.exists():
            texts, labels = _semeval(SHARED / "semeval2010_task8" / "test.txt")
            pick = _sample(labels, VAL_SIZE["semeval"])
            _jsonl(val_file, [texts[i] for i in pick], [labels[i] for i in pick])
        return train_file, val_file
    raise ValueError(f"unknown dataset {case.dataset}")


# ---------------------------------------------------------------- one case


def run_case(case: Case, out: Path, tolerance: float) -> dict:
    """Advise, compare, and the case's row (also saved as <out>/<case>/row.json)."""
    train, val = prepare(case, out / "data")
    folder = out / case.name
    folder.mkdir(parents=True, exist_ok=True)
    advice_file = folder / "advice.json"
    if advice_file.exists():
        advice = json.loads(advice_file.read_text())
    else:
        result = advise(case.model, str(train), seed=0, progress=False)
        advice = result.to_dict()
        advice_file.write_text(json.dumps(advice, indent=1))
    e = advice["evidence"]
    k = transfer_depth(e["logme_per_block"], Thresholds(**e["thresholds"]).transfer_drop)[0]
    specs = tuple(dict.fromkeys(("none", f"retrain:{k}", "full", "scratch", advice["recommendation"])))
    config = CompareConfig(
        model=case.model,
        data=str(train),
        val_data=str(val),
        out=str(folder / "compare"),
        strategies=specs,
        epochs=case.epochs,
        seeds=1,
    )
    compare(config)
    results = {r.strategy: r for r in aggregate(collect([Path(r.out) for r in planned_runs(config)]))}
    scores = {s: results[s].score_mean for s in specs}
    best = max(scores, key=scores.get)
    rec = advice["recommendation"]
    row = {
        "case": case.name,
        "model": case.model,
        "dataset": case.dataset,
        "train_examples": e["n"],
        "per_class_median": e["per_class_median"],
        "classes": e["classes"],
        "logme_pretrained": e["logme_pretrained"],
        "logme_gain": e["logme_pretrained"] - e["logme_control"],
        "logme_gain_noise": e["logme_gain_noise"],
        "recommendation": rec,
        "runner_up": advice["runner_up"],
        "scores": scores,
        "best": best,
        "regret": scores[best] - scores[rec],
        "hit": scores[rec] >= scores[best] - tolerance,
        "advise_seconds": e["seconds"],
        "full_seconds": results["full"].train_seconds_mean,
        "epochs": case.epochs,
    }
    (folder / "row.json").write_text(json.dumps(row, indent=1))
    return row


# ---------------------------------------------------------------- summary


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks, ties sharing their mean rank."""

    def ranks(v: list[float]) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def table(rows: list[dict], tolerance: float) -> str:
    header = (
        "| case | train n (median/class) | LogME gain ± noise | advice (runner-up) | none | retrain:K | full "
        "| scratch | best | hit | advise s / full s |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        s = r["scores"]
        retrain = next(k for k in s if k.startswith("retrain"))
        cells = [f"{s[k]:.3f}" + (" ★" if k == r["best"] else "") for k in ("none", retrain, "full", "scratch")]
        lines.append(
            f"| {r['case']} | {r['train_examples']} ({r['per_class_median']:g}) | {r['logme_gain']:+.3f} ± "
            f"{r['logme_gain_noise']:.3f} | {r['recommendation']} ({r['runner_up']}) | {cells[0]} | {cells[1]} "
            f"({retrain}) | {cells[2]} | {cells[3]} | {r['best']} | {'yes' if r['hit'] else 'no'} "
            f"| {r['advise_seconds']:.0f} / {r['full_seconds']:.0f} = {r['advise_seconds'] / r['full_seconds']:.2f} |"
        )
    hits = sum(r["hit"] for r in rows)
    pairs = sorted({(r["model"], r["dataset"]) for r in rows})
    full_acc = [r["scores"]["full"] for r in rows]
    benefit = [max(v for k, v in r["scores"].items() if k != "scratch") - r["scores"]["scratch"] for r in rows]
    epochs = "/".join(sorted({str(r["epochs"]) for r in rows}))
    logme_vs_full = spearman([r["logme_pretrained"] for r in rows], full_acc)
    summary = [
        "",
        f"{len(rows)} cases, {len(pairs)} (model, dataset) pairs, {epochs} epochs, 1 seed, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cores.",
        f"Hit rate (advice within {tolerance * 100:g} point of the best): {hits}/{len(rows)} = {hits / len(rows):.0%}; "
        f"mean regret {np.mean([r['regret'] for r in rows]):.3f}.",
        f"Spearman rank correlation: pretrained LogME vs `full` accuracy {logme_vs_full:+.2f}; "
        f"LogME gain over the random-init control vs what pretraining bought (best transfer minus scratch) "
        f"{spearman([r['logme_gain'] for r in rows], benefit):+.2f}.",
    ]
    return "\n".join(lines + summary) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/bench-advisor", help="working folder (data subsets, runs); resumable")
    parser.add_argument(
        "--cases", default="", help="comma-separated case names (default: all): " + ", ".join(c.name for c in CASES)
    )
    parser.add_argument("--tolerance", type=float, default=0.01, help="a hit is within this of the best score")
    args = parser.parse_args()
    wanted = set(filter(None, args.cases.split(",")))
    unknown = wanted - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    out = Path(args.out)
    for case in CASES:
        if wanted and case.name not in wanted:
            continue
        started = time.perf_counter()
        row = run_case(case, out, args.tolerance)
        print(
            f"{case.name}: advice {row['recommendation']}, best {row['best']} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        write_results(out, args.tolerance)


def write_results(out: Path, tolerance: float) -> None:
    """The table over every case finished so far in `out`, whichever invocation ran it (printed and written)."""
    rows = [json.loads(f.read_text()) for c in CASES if (f := out / c.name / "row.json").exists()]
    write_table("advice_hit_rate", table(rows, tolerance), quick=False)
    (HERE / "results" / "advice_hit_rate.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
