"""Loop overhead: tunelab `full` against a plain hand-written PyTorch loop (the floor) on the same model and data.

MobileNetV2 on a hymenoptera subset and MiniLM-L6 on an SST-2 subset; both sides train the same model
(from `tunelab.runs.prepare.prepare`), with the same data, batch size, epochs, seed, optimizer and thread count,
each repetition in a fresh process, sides interleaved. See plain_loop.py for what each side does.

Run: python benchmarks/loop_overhead.py [--quick]
"""

from __future__ import annotations

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

SIDES = ("tunelab", "plain")


def worker(args) -> None:
    from plain_loop import as_plain_loop, plain_loop, tunelab_run

    set_threads(args.threads)
    val = Path(args.val_data) if args.val_data else None
    run_args = (args.model, "full", Path(args.data), val, args.epochs, args.batch_size, args.seed)
    if args.side == "plain":
        emit(plain_loop(*run_args, augment=False))
    else:  # this table measures the loop, not what the length-grouping and attention defaults save
        emit(tunelab_run(*run_args, augment=False, **as_plain_loop(args.model)))


def main() -> None:
    parser = driver_parser(
        __doc__, SIDES, repetitions=5, batch_size=16, worker_fields=("--model", "--data", "--val-data")
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    data = bench_data(Path(tempfile.mkdtemp(prefix="bench-loop-")), args.quick)
    cases = [
        ("MobileNetV2", "mobilenet_v2", data.images, None, data.images_what),
        ("MiniLM-L6", "minilm-l6", data.sst2_train, data.sst2_dev, data.sentences_what),
    ]
    load_before = os.getloadavg()[0]

    def measure(case: tuple) -> dict[str, list[dict]]:
        title, model, data, val, what = case
        common = [
            "--model",
            model,
            "--data",
            str(data),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
        ] + (["--val-data", str(val)] if val else [])
        return interleaved(SIDES, reps, lambda side, rep: run_worker(__file__, side, common, f"{title} "), f"{title} ")

    def row(case: tuple, results: dict[str, list[dict]]) -> str:
        title, what = case[0], case[-1]
        t, p = results["tunelab"], results["plain"]
        return (
            f"| {title} | {what} | {median(t, 'epoch_s') / median(p, 'epoch_s'):.3f} | {paired_ratio(t, p, 'epoch_s')} | {median(t, 'epoch_s'):.2f} | "
            f"{median(p, 'epoch_s'):.2f} | {median(t, 'total_s') / median(p, 'total_s'):.3f} | {median(t, 'total_s'):.1f} | "
            f"{median(p, 'total_s'):.1f} | {spread(t, 'accuracy')} | {spread(p, 'accuracy')} | {median(t, 'peak_mb'):.0f} | "
            f"{median(p, 'peak_mb'):.0f} | {len(t)} |"
        )

    if args.from_log:
        logged = results_from_log(Path(args.from_log))
        all_results = [complete_repetitions(logged[case[0]], SIDES) for case in cases]
        load_before, load_after = loads_in_log(Path(args.from_log))
    else:
        all_results = run_cases(measure, cases)
        load_after = os.getloadavg()[0]
    rows = [row(case, results) for case, results in zip(cases, all_results)]
    reps = min(len(results["tunelab"]) for results in all_results)
    table = [
        f"`full`, {args.epochs} epoch(s), batch {args.batch_size}, no augmentation, seed {args.seed}; medians of {reps} "
        f"interleaved repetitions, each in a fresh process, one model after the other. Machine: {machine(args.threads)}; "
        f"{load_note(load_before, load_after, bool(args.from_log))}.",
        "",
        "| model | data | epoch ratio (tunelab / plain) | paired ratios, median (min-max) | tunelab s/epoch | plain s/epoch | end-to-end ratio | tunelab end-to-end s "
        "| plain end-to-end s | tunelab val acc (min-max) | plain val acc (min-max) | tunelab peak MB | plain peak MB | reps |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    write_table("loop_overhead", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
