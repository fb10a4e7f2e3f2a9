"""NER: tunelab `full` against Hugging Face `Trainer` with `AutoModelForTokenClassification`, MiniLM-L6 on CoNLL-2003.

Data, written once per driver run to two CoNLL files both sides read (all four columns kept; the tag is the last):
1000 training sentences (train.txt without its `-DOCSTART-` lines, shuffled with seed 0) and 500 dev sentences
(valid.txt, the same way). Both sides: the packaged all-MiniLM-L6-v2 weights, 3 epochs, batch 16, at most 64
word pieces per sentence (specials included), seed r in repetition r, the same for both, validation after
each epoch and the best epoch's dev entity F1 reported.

- tunelab: `tunelab.runs.loop.train` with strategy `full` (backbone at 1e-4, the new per-token head at 1e-3,
  AdamW, warmup 10% + cosine, weight decay 0.01, clipping at 1.0), task token-classification, max_length 64.
- Trainer, as the Hugging Face course's token-classification chapter writes it: the packaged weights loaded
  with `AutoModelForTokenClassification` (`BertForTokenClassification`: dropout and a linear layer per token,
  the head tunelab puts on), the tokenizer on the word lists (`is_split_into_words=True`, truncation at 64),
  each word's tag on its first sub-token and -100 on the others and on the specials,
  `DataCollatorForTokenClassification`, evaluation every epoch; the other `TrainingArguments` as in
  hf_peer.py. One learning rate, 1e-4: `Trainer` has one, and 1e-4 is the rate tunelab moves the pretrained
  weights at (and text_peers.py's `full` peer's); the course's 2e-5 is for BERT-base on all 14,041 sentences,
  while this is a 6-layer model given 189 steps (1e-4 for the new head too, where tunelab uses 1e-3: the
  one difference in what the two sides optimise).

Entity F1, the same on both sides: micro-averaged over entities, seqeval's default (conlleval) chunk rules,
per word, with words cut off by max_length counted as `O` (tunelab's rule: a truncated sentence costs recall
rather than vanishing from the score). tunelab reports its own implementation of those rules; the Trainer
side's `compute_metrics` maps each word's first sub-token back to the word, pads the cut words with `O` and
calls `seqeval.metrics.f1_score`. To show the two implementations agree, the Trainer side also scores its
predictions with tunelab's function (column "seqeval vs tunelab's rule"), and after its timed part the
tunelab side predicts the dev sentences with its best model and scores them with seqeval (column "seqeval
on tunelab's best model"; it must equal tunelab's own F1). seqeval is a benchmark-only dependency
(`pip install seqeval`).

Seconds per epoch: training plus the dev pass, on both sides (tunelab's from its metrics.jsonl, the Trainer's
as its train() call over the epochs); peak memory over the whole run. Sides alternate (tunelab, Trainer,
Trainer, tunelab, ...), each repetition in a fresh process.

Run: python benchmarks/ner_peers.py [--repetitions 3] [--quick]
Writes benchmarks/results/ner_peers.md (and the README section between `<!-- ner_peers:begin -->` and
`:end -->` once those markers exist).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path

from bench_common import (
    DATASETS,
    complete_repetitions,
    driver_parser,
    emit,
    interleaved,
    load_note,
    loads_in_log,
    machine,
    median,
    paired_ratio,
    results_from_log,
    run_worker,
    set_threads,
    spread,
    write_table,
)
from domain_shift import read_sentences, write_sentences

SIDES = ("tunelab", "trainer")
SIZES = {False: (1000, 500), True: (32, 16)}
"""(training, dev) sentences, full and --quick."""
LR = 1e-4


# --- data ------------------------------------------------------------------------------------------------------


def conll_subset(source: Path, out: Path, n: int, seed: int = 0) -> Path:
    """`n` sentences of `source` (`-DOCSTART-` left out), shuffled with `seed`, written as a CoNLL file."""
    sentences = read_sentences(source)
    random.Random(seed).shuffle(sentences)
    return write_sentences(out, sentences[:n])


def read_words_and_tags(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Words (first column) and tags (last column) per sentence (the files here are IOB2 already)."""
    sentences = read_sentences(path)
    return [[f[0] for f in s] for s in sentences], [[f[-1] for f in s] for s in sentences]


def tag_names(tags: list[list[str]]) -> list[str]:
    """O, then B-/I- per entity type in sorted order (tunelab's order; any fixed order would do)."""
    types = sorted({tag[2:] for sentence in tags for tag in sentence if tag != "O"})
    return ["O", *(f"{prefix}-{t}" for t in types for prefix in ("B", "I"))]


# --- the tunelab side -------------------------------------------------------------------------------------------


def tunelab_side(train: Path, dev: Path, epochs: int, batch_size: int, seed: int, max_length: int) -> dict:
    """Train as plain_loop.tunelab_run does (same result fields), then score the best model with seqeval."""
    from tunelab.runs.loop import train as train_run
    from tunelab.runs.memory import PeakMemory
    from tunelab.settings import TrainConfig

    with tempfile.TemporaryDirectory(prefix="bench-ner-") as tmp:
        out = Path(tmp) / "run"
        with PeakMemory() as memory:
            started = time.perf_counter()
            config = TrainConfig(
                model="minilm-l6",
                strategy="full",
                task="token-classification",
                data=str(train),
                val_data=str(dev),
                out=str(out),
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                max_length=max_length,
            )
            summary = train_run(config)
            total = time.perf_counter() - started
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        seqeval_f1 = seqeval_of_run(out, dev, batch_size)
    return {
        "epoch_s": (summary["cache_seconds"] + sum(m["seconds"] for m in metrics)) / len(metrics),
        "total_s": total,
        "f1": summary["score"],
        "peak_mb": memory.mb,
        "seqeval_f1": seqeval_f1,
    }


def seqeval_of_run(run: Path, dev: Path, batch_size: int) -> float:
    """seqeval's entity F1 of a finished run's best model on `dev`, from `tunelab predict`'s entity spans.

    Each sentence goes in as its words joined by spaces (CoNLL words hold no space, and predict splits on
    whitespace), and each entity span comes back as B-/I- tags on the words it covers.
    """
    from seqeval.metrics import f1_score

    from tunelab.runs.evaluate import predict

    words, gold = read_words_and_tags(dev)
    lines = [" ".join(w) for w in words]
    predicted = []
    for sentence, answer in zip(words, predict(run, lines, batch_size=batch_size)):
        starts = [sum(len(w) + 1 for w in sentence[:i]) for i in range(len(sentence))]
        tags = ["O"] * len(sentence)
        for entity in answer.entities:
            kind, start, end = entity
            covered = [i for i, s in enumerate(starts) if start <= s < end]
            tags[covered[0]] = f"B-{kind}"
            for i in covered[1:]:
                tags[i] = f"I-{kind}"
        predicted.append(tags)
    return float(f1_score(gold, predicted))


# --- the Trainer side -------------------------------------------------------------------------------------------


def trainer_side(train: Path, dev: Path, epochs: int, batch_size: int, seed: int, max_length: int) -> dict:
    """`Trainer` + `AutoModelForTokenClassification`, first-sub-token labels, seqeval F1 (see the module doc)."""
    import numpy as np
    from seqeval.metrics import f1_score
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        set_seed,
    )
    from transformers.utils import logging

    from hf_peer import training_arguments
    from tunelab.models.packaged import MINILM
    from tunelab.runs.memory import PeakMemory
    from tunelab.tasks.entities import entity_report

    logging.set_verbosity_error()  # the "newly initialized classifier" notice
    with PeakMemory() as memory, tempfile.TemporaryDirectory(prefix="bench-hf-ner-") as tmp:
        started = time.perf_counter()
        set_seed(seed)
        folder = MINILM.verified_path().parent
        tokenizer = AutoTokenizer.from_pretrained(folder)
        train_words, train_tags = read_words_and_tags(train)
        dev_words, dev_tags = read_words_and_tags(dev)
        names = tag_names(train_tags)
        index = {name: i for i, name in enumerate(names)}

        def tokenised(words: list[list[str]], tags: list[list[str]]) -> list[dict]:
            encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
            rows = []
            for i, sentence_tags in enumerate(tags):
                labels, previous = [], None
                for word in encoded.word_ids(i):
                    labels.append(-100 if word is None or word == previous else index[sentence_tags[word]])
                    previous = word
                rows.append({**{k: v[i] for k, v in encoded.items()}, "labels": labels})
            return rows

        def entity_f1(prediction) -> dict:
            predicted = []
            for logits, labels, gold in zip(prediction.predictions, prediction.label_ids, dev_tags):
                first = labels != -100  # one position per word that survived truncation, in word order
                tags = [names[i] for i in np.asarray(logits)[first].argmax(-1)]
                predicted.append(tags + ["O"] * (len(gold) - len(tags)))  # words cut off count as O
            return {
                "f1": float(f1_score(dev_tags, predicted)),
                "f1_rule": entity_report(dev_tags, predicted).overall.f1,
            }

        model = AutoModelForTokenClassification.from_pretrained(
            folder, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index
        )
        args = training_arguments(tmp, epochs, batch_size, LR, seed)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=tokenised(train_words, train_tags),
            eval_dataset=tokenised(dev_words, dev_tags),
            data_collator=DataCollatorForTokenClassification(tokenizer),
            compute_metrics=entity_f1,
        )
        loop_started = time.perf_counter()
        trainer.train()
        epoch_s = (time.perf_counter() - loop_started) / epochs
        total = time.perf_counter() - started
        evaluations = [entry for entry in trainer.state.log_history if "eval_f1" in entry]
    return {
        "epoch_s": epoch_s,
        "total_s": total,
        "f1": max(entry["eval_f1"] for entry in evaluations),
        "peak_mb": memory.mb,
        "rule_diff": max(abs(entry["eval_f1"] - entry["eval_f1_rule"]) for entry in evaluations),
    }


# --- the driver ---------------------------------------------------------------------------------------------------


def worker(args) -> None:
    set_threads(args.threads)
    side = tunelab_side if args.side == "tunelab" else trainer_side
    emit(side(Path(args.data), Path(args.val_data), args.epochs, args.batch_size, args.seed, args.max_length))


def main() -> None:
    parser = driver_parser(__doc__, SIDES, repetitions=3, batch_size=16, worker_fields=("--data", "--val-data"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    n_train, n_dev = SIZES[args.quick]
    folder = Path(tempfile.mkdtemp(prefix="bench-ner-data-"))
    train = conll_subset(DATASETS / "conll2003" / "train.txt", folder / "train.txt", n_train)
    dev = conll_subset(DATASETS / "conll2003" / "valid.txt", folder / "dev.txt", n_dev)
    load_before = os.getloadavg()[0]

    def one(side: str, rep: int) -> dict:
        fields = ["--data", str(train), "--val-data", str(dev), "--epochs", str(args.epochs)]
        fields += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
        fields += ["--threads", str(args.threads), "--seed", str(args.seed + rep)]
        return run_worker(__file__, side, fields, "ner ")

    if args.from_log:
        results = complete_repetitions(results_from_log(Path(args.from_log)).get("ner", {}), SIDES)
        load_before, load_after = loads_in_log(Path(args.from_log))
    else:
        results = interleaved(SIDES, reps, one, "ner ")
        load_after = os.getloadavg()[0]
    t, h = results["tunelab"], results["trainer"]
    reps = len(t)
    table = [
        f"MiniLM-L6 on CoNLL-2003: {n_train} training sentences (train.txt, shuffled with seed 0), {n_dev} dev "
        f"sentences (valid.txt, shuffled with seed 0); tunelab `full` vs `Trainer` + `AutoModelForTokenClassification` "
        f"(lr {LR:g}); {args.epochs} epochs, batch {args.batch_size}, max_length {args.max_length}; seeds "
        f"{args.seed}..{args.seed + reps - 1}, one per repetition, same on both sides; medians of {reps} interleaved "
        f"repetitions, each in a fresh process. Entity F1: micro, seqeval's default rules, best epoch on the dev "
        f"sentences. Machine: {machine(args.threads)}; {load_note(load_before, load_after, bool(args.from_log))}.",
        "",
        "| time ratio (tunelab / Trainer) | paired time ratios, median (min-max) | tunelab s/epoch | Trainer s/epoch "
        "| memory ratio | tunelab peak MB | Trainer peak MB | tunelab entity F1 (min-max) | Trainer entity F1 (min-max) "
        "| seqeval on tunelab's best model, largest abs difference from its F1 | seqeval vs tunelab's rule on the "
        "Trainer's predictions, largest abs difference | tunelab end-to-end s | Trainer end-to-end s | reps |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {median(t, 'epoch_s') / median(h, 'epoch_s'):.2f} | {paired_ratio(t, h, 'epoch_s')} | "
        f"{median(t, 'epoch_s'):.1f} | {median(h, 'epoch_s'):.1f} | {median(t, 'peak_mb') / median(h, 'peak_mb'):.2f} | "
        f"{median(t, 'peak_mb'):.0f} | {median(h, 'peak_mb'):.0f} | {median(t, 'f1'):.3f} ({spread(t, 'f1')}) | "
        f"{median(h, 'f1'):.3f} ({spread(h, 'f1')}) | {max(abs(r['seqeval_f1'] - r['f1']) for r in t):.1e} | "
        f"{max(r['rule_diff'] for r in h):.1e} | {median(t, 'total_s'):.1f} | {median(h, 'total_s'):.1f} | {reps} |",
    ]
    write_table("ner_peers", "\n".join(table), args.quick, add_section=False)


if __name__ == "__main__":
    main()
