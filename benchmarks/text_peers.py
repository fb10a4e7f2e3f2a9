"""Text: tunelab `full`, `lora`, `none`, `adapter` against Hugging Face `Trainer` (+ PEFT) on MiniLM-L6 and SST-2.

Per strategy the two sides alternate (tunelab, Trainer, tunelab, Trainer, ...), each repetition in a fresh
process with repetition r using seed r on both sides, so the accuracy spread is seed noise. What the
`Trainer` side does, and where it necessarily differs, is in hf_peer.py.

Run: python benchmarks/text_peers.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench_common import (
    bench_data,
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
    run_cases,
    run_worker,
    set_threads,
    spread,
    write_table,
)

SIDES = ("tunelab", "trainer")
STRATEGIES = ("full", "lora", "none", "adapter")


def worker(args) -> None:
    set_threads(args.threads)
    data, val = Path(args.data), Path(args.val_data)
    if args.side == "tunelab":
        from plain_loop import tunelab_run

        emit(tunelab_run("minilm-l6", args.strategy, data, val, args.epochs, args.batch_size, args.seed, augment=False))
    else:
        from hf_peer import hf_trainer_run

        emit(hf_trainer_run(args.strategy, data, val, args.epochs, args.batch_size, args.seed))


def main() -> None:
    parser = driver_parser(
        __doc__, SIDES, repetitions=3, batch_size=16, worker_fields=("--strategy", "--data", "--val-data")
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    data = bench_data(Path(tempfile.mkdtemp(prefix="bench-text-")), args.quick)
    train, dev = data.sst2_train, data.sst2_dev
    load_before = os.getloadavg()[0]

    def measure(strategy: str) -> dict[str, list[dict]]:
        common = [
            "--strategy",
            strategy,
            "--data",
            str(train),
            "--val-data",
            str(dev),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            str(args.threads),
        ]
        return interleaved(
            SIDES,
            reps,
            lambda side, rep: run_worker(__file__, side, [*common, "--seed", str(rep)], f"{strategy} "),
            f"{strategy} ",
        )

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
    table = [
        f"MiniLM-L6 on {data.sentences_what} (training sentences shuffled with seed 0, the first dev sentences); "
        f"{args.epochs} epoch(s), batch {args.batch_size}; seeds 0..{reps - 1}, one per repetition, same on both sides; medians of "
        f"up to {reps} interleaved repetitions (the reps column), each in a fresh process, one strategy after the other. Machine: {machine(args.threads)}; "
        f"{load_note(load_before, load_after, bool(args.from_log))}.",
        "",
        "| strategy | time ratio (tunelab / Trainer) | paired time ratios, median (min-max) | tunelab s/epoch | Trainer s/epoch | memory ratio | tunelab peak MB "
        "| Trainer peak MB | tunelab val acc (min-max) | Trainer val acc (min-max) | tunelab end-to-end s | Trainer end-to-end s | reps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    write_table("text_peers", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
