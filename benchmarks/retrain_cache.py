"""Re-Train with half the blocks frozen: tunelab with the boundary cache, without it, and a plain loop.

`retrain:K` freezes blocks 0..K-1. tunelab computes their output once (eval mode, no augmentation: a pure
function of the input), keeps it in the feature cache (feature_cache.py) and trains only blocks K.. on it.
`--no-cache` runs the frozen prefix on every batch of every epoch; the plain loop does the same by hand
under `torch.no_grad()` (plain_loop.py). Augmentation is off on every side, so all three compute the same
thing. MobileNetV2 (9 blocks, retrain:4 freezes the stem and stages 1-3) and MiniLM-L6 (7 blocks,
retrain:4 freezes the embeddings and layers 0-2, half of the six layers).

Run: python benchmarks/retrain_cache.py [--quick]
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
    loads_in_log,
    machine,
    median,
    results_from_log,
    run_cases,
    run_worker,
    set_threads,
    spread,
    write_table,
)

SIDES = ("cache", "no-cache", "plain")
LABELS = {"cache": "tunelab (boundary cache)", "no-cache": "tunelab --no-cache", "plain": "plain loop (no_grad prefix)"}


def worker(args) -> None:
    from plain_loop import as_plain_loop, plain_loop, tunelab_run

    set_threads(args.threads)
    val = Path(args.val_data) if args.val_data else None
    run_args = (args.model, args.strategy, Path(args.data), val, args.epochs, args.batch_size, args.seed)
    if args.side == "plain":
        emit(plain_loop(*run_args, augment=False))
    else:
        # this table measures the cache, not what the length-grouping and attention defaults save
        emit(tunelab_run(*run_args, augment=False, cache=args.side == "cache", **as_plain_loop(args.model)))


def main() -> None:
    parser = driver_parser(
        __doc__, SIDES, repetitions=2, batch_size=16, worker_fields=("--model", "--strategy", "--data", "--val-data")
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    reps = 1 if args.quick else args.repetitions
    data = bench_data(Path(tempfile.mkdtemp(prefix="bench-retrain-")), args.quick)
    cases = [
        ("MobileNetV2", "mobilenet_v2", "retrain:4", data.images, None, data.images_what),
        ("MiniLM-L6", "minilm-l6", "retrain:4", data.sst2_train, data.sst2_dev, data.sentences_what),
    ]
    load_before = os.getloadavg()[0]

    def measure(case: tuple) -> dict[str, list[dict]]:
        title, model, strategy, data, val, what = case
        common = [
            "--model",
            model,
            "--strategy",
            strategy,
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
        ]
        common += ["--val-data", str(val)] if val else []
        return interleaved(SIDES, reps, lambda side, rep: run_worker(__file__, side, common, f"{title} "), f"{title} ")

    def rows_for(case: tuple, results: dict[str, list[dict]]) -> list[str]:
        """One row per side that finished a run; ratios to the plain loop only when it finished too."""
        title, strategy, what = case[0], case[2], case[-1]
        plain = results.get("plain")

        def ratio(r: list[dict], key: str) -> str:
            return f"{median(r, key) / median(plain, key):.2f}" if plain else "n/a"

        return [
            f"| {title} {strategy} | {what} | {LABELS[side]} | {median(r, 'epoch_s'):.2f} | {ratio(r, 'epoch_s')} | "
            f"{median(r, 'total_s'):.1f} | {ratio(r, 'total_s')} | {spread(r, 'accuracy')} | {median(r, 'peak_mb'):.0f} | {len(r)} |"
            for side, r in results.items()
            if r
        ]

    if args.from_log:  # every run that finished, complete repetitions or not (see the reps column)
        logged = results_from_log(Path(args.from_log))
        all_results = [{side: logged.get(case[0], {}).get(side, []) for side in SIDES} for case in cases]
        load_before, load_after = loads_in_log(Path(args.from_log))
    else:
        all_results = run_cases(measure, cases)
        load_after = os.getloadavg()[0]
    rows = [row for case, results in zip(cases, all_results) for row in rows_for(case, results)]
    reps = max((len(r) for results in all_results for r in results.values()), default=0)
    table = [
        f"{args.epochs} epochs, batch {args.batch_size}, no augmentation, seed {args.seed}; medians of up to {reps} interleaved repetitions (the reps column), "
        f"each in a fresh process, one model after the other. s/epoch includes the validation pass and, for the cache, its one-off pass shared out over the "
        f"epochs. Machine: {machine(args.threads)}; {load_note(load_before, load_after)}.",
        "",
        "| model | data | side | s/epoch | ratio to plain | end-to-end s | ratio to plain | val acc (min-max) | peak MB | reps |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    write_table("retrain_cache", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
