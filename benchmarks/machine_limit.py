"""Distance to the machine's limit: training FLOP/s of tunelab `full` on MiniLM-L6 against a large matmul's FLOP/s.

In one process: the FLOPs of one epoch (training forward + backward, and the validation forward) are
counted by `torch.utils.flop_counter.FlopCounterMode` around a tunelab run (counted, not timed); then
timed runs with the same seed, so the same batches and padding, alternate with a 2048x2048 float32
matmul timed on the same threads. Achieved FLOP/s = counted FLOPs / median epoch seconds; the matmul is
what this machine's BLAS reaches on dense work, the practical ceiling.

Run: python benchmarks/machine_limit.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_common import bench_data, load_note, machine, set_threads, write_table
from plain_loop import tunelab_run


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """Median FLOP/s of an n x n float32 matmul (2 n^3 FLOPs each)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition, README untouched")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    reps = 1 if args.quick else args.repetitions
    data = bench_data(Path(tempfile.mkdtemp(prefix="bench-flops-")), args.quick)
    train, dev = data.sst2_train, data.sst2_dev
    load_before = os.getloadavg()[0]

    counter = FlopCounterMode(display=False)
    with counter:
        tunelab_run("minilm-l6", "full", train, dev, 1, args.batch_size, 0, augment=False)
    flops = counter.get_total_flops()
    peaks, epochs = [matmul_flops()], []
    for rep in range(reps):
        print(f"repetition {rep + 1}/{reps}: matmul {peaks[-1] / 1e9:.1f} GFLOP/s", flush=True)
        epochs.append(tunelab_run("minilm-l6", "full", train, dev, 1, args.batch_size, 0, augment=False)["epoch_s"])
        peaks.append(matmul_flops())
        print(f"  epoch {epochs[-1]:.1f}s, {flops / epochs[-1] / 1e9:.2f} GFLOP/s", flush=True)
    epoch_s, peak = statistics.median(epochs), statistics.median(peaks)
    achieved = flops / epoch_s
    table = [
        f"MiniLM-L6 `full`, {data.sentences_what}, 1 epoch, batch {args.batch_size}, "
        f"seed 0; medians of {reps} timed runs and {len(peaks)} matmuls, alternating, in one process. Machine: {machine(args.threads)}; "
        f"{load_note(load_before, os.getloadavg()[0])}.",
        "",
        "| FLOPs per epoch (train fwd+bwd, val fwd) | s/epoch | achieved GFLOP/s | 2048x2048 fp32 matmul GFLOP/s | achieved / matmul | reps |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {flops / 1e9:.1f} G | {epoch_s:.2f} | {achieved / 1e9:.2f} | {peak / 1e9:.1f} | {achieved / peak:.1%} | {reps} |",
    ]
    write_table("machine_limit", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()
