"""Text: tunelab with and without --length-grouping, paired, to decide its default (issue 21).

MiniLM-L6 on the SST-2 subset (1000 shuffled training / the first 400 dev sentences, as the other text
tables), `full`, `lora` and `adapter` by default, 2 epochs, batch 16. Per strategy the two sides alternate
(plain, grouped, grouped, plain, ...), each repetition in a fresh process with repetition r using seed r on
both sides, so the accuracy columns are seed spreads. Grouping changes which sentences share a batch, not
what is learned from an epoch, so the accuracies should agree within those spreads; the time ratio is what
the padding it removes is worth.

Run: python benchmarks/length_grouping.py [--repetitions 3] [--strategies full,lora,adapter] [--quick]
Writes benchmarks/results/length_grouping.md and the table between its markers in benchmarks/README.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_common import (
    bench_data,
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

SIDES = ("plain", "grouped")
STRATEGIES = ("full", "lora", "adapter")


def worker(args) -> None:
    from plain_loop import tunelab_run

    set_threads(args.threads)
    grouped = args.side == "grouped"
    data, val = Path(args.data), Path(args.val_data)
    run = tunelab_run(
        "minilm-l6", args.strategy, data, val, args.epochs, args.batch_size, args.seed, False, length_grouping=grouped
    )
    emit(run)


def main() -> None:
    parser = driver_parser(
        __doc__, SIDES, repetitions=3, batch_size=16, worker_fields=("--strategy", "--data", "--val-data")
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    data = bench_data(Path(tempfile.mkdtemp(prefix="bench-grouping-")), args.quick)
    strategies = args.strategies.split(",")
    load_before = os.getloadavg()[0]

    fields = ["--data", str(data.sst2_train), "--val-data", str(data.sst2_dev), "--epochs", str(args.epochs)]
    fields += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    results = run_cases(lambda strategy: strategy_sides(__file__, SIDES, reps, strategy, fields, args.seed), strategies)
    load_after = os.getloadavg()[0]
    cases = [(strategy, r["grouped"], r["plain"]) for strategy, r in zip(strategies, results)]
    table = [
        f"MiniLM-L6 on {data.sentences_what}, {args.epochs} epoch(s), batch {args.batch_size}, seeds {args.seed}.."
        f"{args.seed + reps - 1} (one per repetition, the same on both sides); medians of {reps} interleaved "
        f"repetitions, each in a fresh process. Machine: {machine(args.threads)}; {load_note(load_before, load_after)}.",
        "",
        *setting_table("grouped", "plain", cases),
    ]
    write_table("length_grouping", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
