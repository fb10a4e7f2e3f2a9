"""Text: tunelab with the checkpoint's attention dropout (0.1) and without it (0, the default), paired (issue 21).

On a CPU torch has no fused attention kernel that drops attention weights, so with dropout on them every
layer materialises its attention matrices (batch x heads x tokens x tokens) in the forward pass and again in
the backward; at 0 the fused kernel runs. That is what the time and memory columns price. Dropping attention
weights is a regulariser, so what it changes in what is learned is the accuracy columns: the default is 0
only if they agree within the seed spreads.

MiniLM-L6, `full`, `lora` and `adapter`, 2 epochs, batch 16, on either corpus of text_peers.py (`--corpus`):
the SST-2 subset (1000 shuffled training / the first 400 dev sentences, short) or the news-length CoNLL-2003
documents at 256 tokens (160 training / 100 evaluation documents). Per strategy the two sides alternate
(dropout, fused, fused, dropout, ...), each repetition in a fresh process with repetition r using seed r on
both sides, so the accuracy columns are seed spreads.

Run: python benchmarks/attention_dropout.py [--corpus sst2|conll-docs] [--repetitions 3] [--quick]
Writes benchmarks/results/attention_dropout_<corpus>.md and the table between its markers in benchmarks/README.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_common import (
    driver_parser,
    emit,
    load_note,
    machine,
    run_cases,
    set_threads,
    setting_table,
    strategy_sides,
    write_table,
)

SIDES = ("dropout", "fused")
STRATEGIES = ("full", "lora", "adapter")


def worker(args) -> None:
    from plain_loop import CHECKPOINT_ATTENTION, tunelab_run

    set_threads(args.threads)
    run = tunelab_run(
        "minilm-l6",
        args.strategy,
        Path(args.data),
        Path(args.val_data),
        args.epochs,
        args.batch_size,
        args.seed,
        False,
        max_length=int(args.max_length),
        attention_dropout=CHECKPOINT_ATTENTION["minilm-l6"] if args.side == "dropout" else 0.0,
    )
    emit(run)


def main() -> None:
    from text_peers import CORPORA, MAX_LENGTH, corpus_data

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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    train, dev, what = corpus_data(args.corpus, Path(tempfile.mkdtemp(prefix="bench-attention-")), args.quick)
    max_length = MAX_LENGTH[args.corpus]
    strategies = args.strategies.split(",")
    load_before = os.getloadavg()[0]

    fields = ["--data", str(train), "--val-data", str(dev), "--epochs", str(args.epochs)]
    fields += ["--batch-size", str(args.batch_size), "--threads", str(args.threads), "--max-length", str(max_length)]
    results = run_cases(lambda strategy: strategy_sides(__file__, SIDES, reps, strategy, fields, args.seed), strategies)
    load_after = os.getloadavg()[0]
    cases = [(strategy, r["fused"], r["dropout"]) for strategy, r in zip(strategies, results)]
    table = [
        f"MiniLM-L6 on {what}, max_length {max_length}, {args.epochs} epoch(s), batch {args.batch_size}, seeds "
        f"{args.seed}..{args.seed + reps - 1} (one per repetition, the same on both sides); medians of {reps} "
        f"interleaved repetitions, each in a fresh process. Machine: {machine(args.threads)}; "
        f"{load_note(load_before, load_after)}.",
        "",
        *setting_table("at 0", "at 0.1", cases),
    ]
    write_table(f"attention_dropout_{args.corpus.replace('-', '_')}", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
