"""Text: tunelab `full`, `lora`, `none`, `adapter` against Hugging Face `Trainer` (+ PEFT) on MiniLM-L6.

Per strategy the two sides alternate (tunelab, Trainer, Trainer, tunelab, ...), each repetition in a fresh
process with repetition r using seed r on both sides, so the accuracy spread is seed noise. What the
`Trainer` side does, and where it necessarily differs, is in hf_peer.py. Both sides read the same two TSV
files (text, label), truncate to the same number of tokens (`--max-length` on the tunelab side, the
tokenizer's `max_length` on the Trainer side), and train the same epochs at the same batch size.

Two corpora (`--corpus`):

- `sst2` (the default; the table in benchmarks/README.md): 1000 SST-2 training sentences shuffled with seed
  0 and the first 400 dev sentences, max_length 128. Sentences are short (a few to ~60 tokens), so padding
  and per-step overheads weigh on the time.
- `conll-docs`: news-length documents, to show what happens when the model, not the loop, does the work.
  CoNLL-2003's Reuters documents (`-DOCSTART-` opens one) are rebuilt by joining their tokens with spaces;
  the label is sports vs other, read from the Reuters slug of the document's first line (its headline:
  "SOCCER - JAPAN GET LUCKY WIN ...", "NFL AMERICAN FOOTBALL-COLTS CLOBBER ..."; the rule and the sport names
  are in `reuters_slug` and `SPORTS`), and that first line is dropped from the text, so the label is not
  written in the input. Documents of fewer than 128 MiniLM word pieces are left out. Training documents come
  from train.txt (687 are long enough), evaluation documents from valid.txt and test.txt (314), each set
  shuffled with seed 0 (the files group documents by topic) and its first 160 and 100 used (`--docs`: all
  of them make a `full` run take about 9 minutes here); max_length 256 on both
  sides, so about half the documents are cut (the driver prints the length distribution and the class
  balance). Writes results/text_peers_conll_docs.md (and the README section between
  `<!-- text_peers_conll_docs:begin -->` and `:end -->` once those markers exist).

Run: python benchmarks/text_peers.py [--corpus sst2|conll-docs] [--strategies full,lora] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench_common import (
    DATASETS,
    bench_data,
    complete_repetitions,
    driver_parser,
    emit,
    load_note,
    loads_in_log,
    machine,
    median,
    paired_ratio,
    results_from_log,
    run_cases,
    set_threads,
    spread,
    strategy_sides,
    write_table,
)

SIDES = ("tunelab", "trainer")
STRATEGIES = ("full", "lora", "none", "adapter")
CORPORA = ("sst2", "conll-docs")
MAX_LENGTH = {"sst2": 128, "conll-docs": 256}
"""Tokens per text on both sides: 128 is tunelab's MiniLM default (SST-2 sentences never reach it); 256 keeps
news documents long (half of those kept are longer and are cut there) at a cost a 2-core machine can pay."""

SPORTS = (
    "SOCCER",
    "CRICKET",
    "TENNIS",
    "BASEBALL",
    "BASKETBALL",
    "FOOTBALL",
    "RUGBY",
    "AUSTRALIAN RULES",
    "HOCKEY",
    "GOLF",
    "CYCLING",
    "ATHLETICS",
    "SQUASH",
    "BADMINTON",
    "BOXING",
    "RACING",
    "RALLYING",
    "MOTORCYCLING",
    "MOTOCROSS",
    "SKIING",
    "SKI JUMPING",
    "SKATING",
    "BOBSLEIGH",
    "SWIMMING",
    "ROWING",
)
"""Every sport named by a slug in CoNLL-2003's three files (read off the list of all their slugs). A slug is sports when one of these occurs in it: "HORSE RACING", "NHL ICE HOCKEY", "NBA BASKETBALL" and
the glued "BASKETBALLSOCCER" all are. The other slugs are news desks and formats ("PRESS DIGEST", "RTRS",
"FEATURE", "BRIGHT", "WEATHER"), so a light sports story filed as "BRIGHT" counts as other, and a story whose
headline has no slug at all ("School football player banned ...") is other too: the label is the desk's."""

MIN_TOKENS = 128
"""A document is kept when its text (headline dropped) is at least this many MiniLM word pieces, specials
not counted: the issue asks for news-length texts of 128+ tokens."""

DOC_SIZES = {False: (160, 100), True: (16, 8)}
"""(training, evaluation) documents, full and --quick: the first of each shuffled set (`--docs` sets others).
The data has 687 and 314 long enough; all of them take about 9 minutes per `full` run here, 3 hours for the
table, so the default is a subset (one run 2-3 minutes)."""


def worker(args) -> None:
    set_threads(args.threads)
    data, val = Path(args.data), Path(args.val_data)
    max_length = int(args.max_length)
    if args.side == "tunelab":
        from plain_loop import tunelab_run

        result = tunelab_run(
            "minilm-l6",
            args.strategy,
            data,
            val,
            args.epochs,
            args.batch_size,
            args.seed,
            augment=False,
            max_length=max_length,
        )
        emit(result)
    else:
        from hf_peer import hf_trainer_run

        emit(hf_trainer_run(args.strategy, data, val, args.epochs, args.batch_size, args.seed, max_length))


# --- the conll-docs corpus --------------------------------------------------------------------------------


def conll_documents(lines: Iterable[str]) -> list[list[list[str]]]:
    """CoNLL column lines -> documents, each a list of sentences, each a list of tokens (the first column).

    `-DOCSTART-` opens a document and a blank line ends a sentence; a document with no sentence (two
    `-DOCSTART-` lines in a row) is dropped, and lines before the first `-DOCSTART-` form a document of their own.
    """
    documents: list[list[list[str]]] = [[]]
    sentence: list[str] = []
    for line in lines:
        fields = line.split()
        if fields and fields[0] == "-DOCSTART-":
            if sentence:
                documents[-1].append(sentence)
            documents.append([])
            sentence = []
        elif not fields:
            if sentence:
                documents[-1].append(sentence)
            sentence = []
        else:
            sentence.append(fields[0])
    if sentence:
        documents[-1].append(sentence)
    return [document for document in documents if document]


def reuters_slug(headline: str) -> str | None:
    """The slug a Reuters headline opens with, upper-cased ("SOCCER" for "SOCCER - JAPAN GET LUCKY WIN ."), or None.

    Two forms occur in CoNLL-2003: words before " - " ("SOCCER - ...", "Tennis - ...", "RUGBY UNION - ..."),
    and words joined by a hyphen to a title that starts with a capital ("AUSTRALIAN RULES-AFL RESULTS ...",
    "SOCCER SHOWCASE-BETTING ...", "Rugby league-Australian rugby league results ."). A slug has at most 3 words (the longest: "NHL ICE HOCKEY", "OFFICIAL JOURNAL
    CONTENTS"), so an ordinary headline with " - " in it ("U.S. Midwest hog market seen steady - ...") is none.
    """
    match = re.match(r"([^-]+?) - ", headline) or re.match(r"([A-Za-z][A-Za-z ]*[A-Za-z])-(?=[A-Z])", headline)
    if match is None:
        return None
    slug = match.group(1).strip().upper()
    return slug if len(slug.split()) <= 3 else None


def is_sports(slug: str | None) -> bool:
    """Whether a slug names a sport (see SPORTS); a headline without a slug is not sports."""
    return slug is not None and any(sport in slug for sport in SPORTS)


@dataclass(frozen=True)
class Document:
    """One CoNLL-2003 document ready to classify."""

    text: str
    """Every sentence but the first (the headline), tokens joined with single spaces."""
    label: str
    """'sports' or 'other', from the headline's slug."""
    slug: str | None
    """The headline's slug, kept to print which slugs made which class."""


def labelled_document(sentences: list[list[str]]) -> Document | None:
    """A document's text and label; None when nothing is left once the headline is dropped."""
    headline, body = " ".join(sentences[0]), sentences[1:]
    if not body:
        return None
    slug = reuters_slug(headline)
    return Document(" ".join(" ".join(s) for s in body), "sports" if is_sports(slug) else "other", slug)


def long_documents(
    files: Iterable[Path], count_tokens: Callable[[list[str]], list[int]], min_tokens: int
) -> tuple[list[Document], list[int]]:
    """The labelled documents of `files` with at least `min_tokens` tokens, and every document's token count."""
    documents = []
    for path in files:
        for sentences in conll_documents(path.read_text().splitlines()):
            document = labelled_document(sentences)
            if document is not None:
                documents.append(document)
    counts = count_tokens([d.text for d in documents])
    return [d for d, n in zip(documents, counts) if n >= min_tokens], counts


def write_tsv(path: Path, documents: list[Document]) -> Path:
    """The TSV both sides read: a `sentence\\tlabel` header, one document a line (tokens hold no tab)."""
    path.write_text("sentence\tlabel\n" + "".join(f"{d.text}\t{d.label}\n" for d in documents))
    return path


def minilm_token_counts(texts: list[str]) -> list[int]:
    """MiniLM word pieces per text, without [CLS] and [SEP] (the tokenizer both sides use)."""
    from transformers import AutoTokenizer

    from tunelab.models.packaged import MINILM

    tokenizer = AutoTokenizer.from_pretrained(MINILM.verified_path().parent)
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def balance(documents: list[Document]) -> str:
    sports = sum(d.label == "sports" for d in documents)
    return f"{sports} sports / {len(documents) - sports} other ({sports / max(len(documents), 1):.0%} sports)"


def conll_docs_data(folder: Path, sizes: tuple[int, int]) -> tuple[Path, Path, str]:
    """Training and evaluation TSVs of long CoNLL-2003 documents (at most `sizes` of each), and the sentence that
    describes them."""
    source = DATASETS / "conll2003"
    n_train, n_eval = sizes
    train, train_counts = long_documents([source / "train.txt"], minilm_token_counts, MIN_TOKENS)
    held_out, eval_counts = long_documents([source / "valid.txt", source / "test.txt"], minilm_token_counts, MIN_TOKENS)
    for documents in (train, held_out):
        random.Random(0).shuffle(documents)
    train, held_out = train[:n_train], held_out[:n_eval]
    for name, documents, counts in (("train.txt", train, train_counts), ("valid+test", held_out, eval_counts)):
        deciles = statistics.quantiles(counts, n=10)
        print(
            f"{name}: {len(counts)} documents, word pieces min {min(counts)}, deciles "
            f"{', '.join(f'{q:.0f}' for q in deciles)}, max {max(counts)}; "
            f"{sum(n >= MIN_TOKENS for n in counts)} have >= {MIN_TOKENS}, {len(documents)} used: {balance(documents)}"
        )
    for label in ("sports", "other"):
        slugs = Counter(str(d.slug) for d in train + held_out if d.label == label)
        print(f"slugs of '{label}' documents used: {', '.join(f'{s} {n}' for s, n in slugs.most_common(30))}")
    folder.mkdir(parents=True, exist_ok=True)
    cut = sum(n >= MAX_LENGTH["conll-docs"] - 2 for n in minilm_token_counts([d.text for d in train + held_out]))
    what = (
        f"CoNLL-2003 documents, sports vs other from the headline's slug, headline removed ({len(train)} from "
        f"train.txt: {balance(train)}; {len(held_out)} from valid.txt + test.txt for evaluation: {balance(held_out)}; "
        f"only documents of >= {MIN_TOKENS} word pieces, {cut} of the {len(train) + len(held_out)} cut at "
        f"max_length {MAX_LENGTH['conll-docs']}; each set shuffled with seed 0)"
    )
    return write_tsv(folder / "train.tsv", train), write_tsv(folder / "dev.tsv", held_out), what


def corpus_data(
    corpus: str, folder: Path, quick: bool, doc_sizes: tuple[int, int] | None = None
) -> tuple[Path, Path, str]:
    """Training and evaluation TSVs of `corpus` (see CORPORA) under `folder`, and the sentence that describes
    them; `doc_sizes` overrides DOC_SIZES for conll-docs."""
    if corpus == "sst2":
        data = bench_data(folder, quick)
        what = data.sentences_what + " (training sentences shuffled with seed 0, the first dev sentences)"
        return data.sst2_train, data.sst2_dev, what
    return conll_docs_data(folder / "conll-docs", doc_sizes or DOC_SIZES[quick])


# --- the driver ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = driver_parser(
        __doc__,
        SIDES,
        repetitions=3,
        batch_size=16,
        worker_fields=("--strategy", "--data", "--val-data", "--max-length"),
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--corpus", choices=CORPORA, default="sst2", help="short sentences or long documents")
    parser.add_argument(
        "--docs", help="conll-docs: training,evaluation documents (default 160,100; 687,314 is all of them)"
    )
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    sizes = tuple(int(n) for n in args.docs.split(",")) if args.docs else None
    train, dev, what = corpus_data(args.corpus, Path(tempfile.mkdtemp(prefix="bench-text-")), args.quick, sizes)
    max_length = MAX_LENGTH[args.corpus]
    load_before = os.getloadavg()[0]

    fields = ["--data", str(train), "--val-data", str(dev), "--epochs", str(args.epochs)]
    fields += ["--batch-size", str(args.batch_size), "--threads", str(args.threads), "--max-length", str(max_length)]

    def measure(strategy: str) -> dict[str, list[dict]]:
        return strategy_sides(__file__, SIDES, reps, strategy, fields)  # seeds 0..reps-1

    def row(strategy: str, results: dict[str, list[dict]]) -> str:
        t, h = results["tunelab"], results["trainer"]
        return (
            f"| {strategy} | {median(t, 'epoch_s') / median(h, 'epoch_s'):.2f} | {paired_ratio(t, h, 'epoch_s')} | {median(t, 'epoch_s'):.1f} | {median(h, 'epoch_s'):.1f} | "
            f"{median(t, 'peak_mb') / median(h, 'peak_mb'):.2f} | {median(t, 'peak_mb'):.0f} | {median(h, 'peak_mb'):.0f} | "
            f"{median(t, 'accuracy'):.3f} ({spread(t, 'accuracy')}) | {median(h, 'accuracy'):.3f} ({spread(h, 'accuracy')}) | "
            f"{median(t, 'total_s'):.1f} | {median(h, 'total_s'):.1f} | {len(t)} |"
        )

    strategies = args.strategies.split(",")
    if args.from_log:
        logged = results_from_log(Path(args.from_log))
        all_results = [complete_repetitions(logged.get(s, {}), SIDES) for s in strategies]
        load_before, load_after = loads_in_log(Path(args.from_log))
    else:
        all_results = run_cases(measure, strategies)
        load_after = os.getloadavg()[0]
    rows = [row(strategy, results) for strategy, results in zip(strategies, all_results) if results["tunelab"]]
    reps = max(len(results["tunelab"]) for results in all_results)
    length = "" if args.corpus == "sst2" else f", max_length {max_length} on both sides"
    table = [
        f"MiniLM-L6 on {what}; "
        f"{args.epochs} epoch(s), batch {args.batch_size}{length}; seeds 0..{reps - 1}, one per repetition, same on both sides; medians of "
        f"up to {reps} interleaved repetitions (the reps column), each in a fresh process, one strategy after the other. Machine: {machine(args.threads)}; "
        f"{load_note(load_before, load_after, bool(args.from_log))}.",
        "",
        "| strategy | time ratio (tunelab / Trainer) | paired time ratios, median (min-max) | tunelab s/epoch | Trainer s/epoch | memory ratio | tunelab peak MB "
        "| Trainer peak MB | tunelab val acc (min-max) | Trainer val acc (min-max) | tunelab end-to-end s | Trainer end-to-end s | reps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    if args.corpus == "sst2":
        write_table("text_peers", "\n".join(table), args.quick)
    else:
        write_table("text_peers_conll_docs", "\n".join(table), args.quick, add_section=False)


if __name__ == "__main__":
    main()
