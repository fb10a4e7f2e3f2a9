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
    bench_data,
    driver_parser,
    emit,
    interleaved,
    load_note,
    machine,
    median,
    paired_ratio,
    run_cases,
    run_worker,
    set_threads,
    spread,
    write_table,
)

SIDES = ("dropout", "fused")
STRATEGIES = ("full", "lora", "adapter")
CHECKPOINT_DROPOUT = 0.1
"""all-MiniLM-L6-v2's attention_probs_dropout_prob, what Trainer and a plain loop train with."""


def worker(args) -> None:
    from plain_loop import tunelab_run

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
        attention_dropout=CHECKPOINT_DROPOUT if args.side == "dropout" else 0.0,
    )
    emit(run)


def main() -> None:
    from text_peers import CORPORA, DOC_SIZES, MAX_LENGTH, conll_docs_data

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
    folder = Path(tempfile.mkdtemp(prefix="bench-attention-"))
    if args.corpus == "sst2":
        data = bench_data(folder, args.quick)
        train, dev, what = data.sst2_train, data.sst2_dev, data.sentences_what
    else:
        train, dev, what = conll_docs_data(folder / "conll-docs", DOC_SIZES[args.quick])
    max_length = MAX_LENGTH[args.corpus]
    strategies = args.strategies.split(",")
    load_before = os.getloadavg()[0]

    def measure(strategy: str) -> dict[str, list[dict]]:
        def one(side: str, rep: int) -> dict:
            fields = ["--strategy", strategy, "--data", str(train), "--val-data", str(dev)]
            fields += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
            fields += ["--threads", str(args.threads), "--seed", str(args.seed + rep), "--max-length", str(max_length)]
            return run_worker(__file__, side, fields, f"{strategy} ")

        return interleaved(SIDES, reps, one, f"{strategy} ")

    results = run_cases(measure, strategies)
    load_after = os.getloadavg()[0]
    rows = []
    for strategy, r in zip(strategies, results):
        d, f = r["dropout"], r["fused"]
        rows.append(
            f"| {strategy} | {median(f, 'epoch_s') / median(d, 'epoch_s'):.2f} | {paired_ratio(f, d, 'epoch_s')} | "
            f"{median(f, 'epoch_s'):.1f} | {median(d, 'epoch_s'):.1f} | {paired_ratio(f, d, 'total_s')} | "
            f"{median(f, 'accuracy'):.3f} ({spread(f, 'accuracy')}) | {median(d, 'accuracy'):.3f} ({spread(d, 'accuracy')}) | "
            f"{median(f, 'peak_mb'):.0f} | {median(d, 'peak_mb'):.0f} | {len(d)} |"
        )
    table = [
        f"MiniLM-L6 on {what}, max_length {max_length}, {args.epochs} epoch(s), batch {args.batch_size}, seeds "
        f"{args.seed}..{args.seed + reps - 1} (one per repetition, the same on both sides); medians of {reps} "
        f"interleaved repetitions, each in a fresh process. Machine: {machine(args.threads)}; "
        f"{load_note(load_before, load_after)}.",
        "",
        "| strategy | epoch time ratio (0 / 0.1) | paired, median (min-max) | at 0 s/epoch | at 0.1 s/epoch "
        "| end-to-end paired ratio | at 0 val acc (min-max) | at 0.1 val acc (min-max) | at 0 peak MB "
        "| at 0.1 peak MB | reps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    write_table(f"attention_dropout_{args.corpus.replace('-', '_')}", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
