"""Compare executors on one machine: one 2 x 2 grid serially, on 2 local workers and on a local Ray instance.

The grid: tiny-cnn (67,770 parameters, 32 px) on examples/digits_small (200 training / 300 held-out
handwritten digits, 8x8 scans, provenance in its PROVENANCE.md), strategies `scratch` and `full`, seeds 0 and 1,
10 epochs of batch 16, no augmentation: enough for both to learn the digits well above chance, so that
"identical scores" compares scores that mean something (tiny-cnn has random weights: a probe of its frozen
features, `none`, stays near chance). Each side is one fresh `tunelab compare` process into its own --out:

- serial: the default, each run with torch's own thread count (every core);
- serial --run-cpus 1: the same, one thread per run;
- local --workers 2: two runs at once, one thread each;
- ray: every run a Ray task of 1 CPU on a local Ray instance that compare starts and stops itself (both in
  its wall time).

Measured: the wall time of the compare process; each run's own wall time and peak memory (from its
summary.json: every run is its own process); each run's score; whether every run's numbers (metrics.jsonl
without its seconds, and the scores) are bit-identical to those of `serial --run-cpus 1`. And, on its own, how
long a local Ray instance takes to start and stop (`ray.init` + `ray.shutdown` in a fresh process), which is
what Ray adds to every compare on one machine.

Run: .venv/bin/python benchmarks/executors.py [--epochs 10] [--quick]
Writes benchmarks/results/executors.md (with --quick: 1 epoch, the table printed only). Needs tunelab[ray].
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "examples" / "digits_small"
STRATEGIES = ("scratch", "full")
SEEDS = 2
SIDES = {
    "serial": [],
    "serial --run-cpus 1": ["--run-cpus", "1"],
    "local --workers 2": ["--executor", "local", "--workers", "2"],
    "ray": ["--executor", "ray"],
}
"""Side name -> its extra compare flags. The reference for identical numbers is `serial --run-cpus 1`."""
REFERENCE = "serial --run-cpus 1"
RAY_START = (
    "import time; t = time.perf_counter(); import ray; "
    "ray.init(num_cpus=2, include_dashboard=False, logging_level='ERROR'); ray.shutdown(); "
    "print(time.perf_counter() - t)"
)


def run_side(name: str, out: Path, epochs: int) -> dict:
    """One `tunelab compare` of the grid with the side's flags; its wall time and every run's numbers."""
    argv = [sys.executable, "-m", "tunelab", "compare", "--model", "tiny-cnn", "--data", str(DATA)]
    argv += ["--strategies", ",".join(STRATEGIES), "--seeds", str(SEEDS), "--epochs", str(epochs)]
    argv += ["--batch-size", "16", "--out", str(out), *SIDES[name]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=log, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(out.with_suffix(".log").read_text()[-3000:])
        raise SystemExit(f"{name}: compare failed with exit code {done.returncode}")
    runs = {}
    for summary_path in sorted((out / "runs").glob("*/*/*/summary.json")):
        summary = json.loads(summary_path.read_text())
        metrics = [json.loads(line) for line in (summary_path.parent / "metrics.jsonl").read_text().splitlines()]
        runs[f"{summary_path.parent.parent.name} {summary_path.parent.name}"] = {  # e.g. 'full s1'
            "score": summary["score"],
            "seconds": summary["train_seconds"],
            "peak_mb": summary["peak_memory_mb"],
            "numbers": (
                [{k: v for k, v in m.items() if k != "seconds"} for m in metrics],
                {k: v for k, v in summary.items() if "score" in k or "accuracy" in k},
            ),
        }
    print(f"  {name}: {wall:.0f} s wall, {len(runs)} runs", flush=True)
    return {"wall": wall, "runs": runs}


def ray_start_seconds() -> float | None:
    done = subprocess.run([sys.executable, "-c", RAY_START], capture_output=True, text=True, check=False)
    return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else None


def table(results: dict[str, dict], epochs: int, ray_start: float | None, loads: tuple[float, float]) -> str:
    keys = sorted(results[REFERENCE]["runs"])
    reference = {k: results[REFERENCE]["runs"][k]["numbers"] for k in keys}
    lines = [
        f"One grid of {len(keys)} runs (tiny-cnn on examples/digits_small, 200 train / 300 val digits; strategies "
        f"{' and '.join(STRATEGIES)}, seeds 0 and 1; {epochs} epochs of batch 16), once per executor, each a fresh "
        f"`tunelab compare` process. {os.cpu_count()} cores ({platform.machine()}), SHARED with other work while "
        f"measured: 1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end, so wall times are "
        "this moment's, not the machine's; one repetition.",
        "",
        "| executor | wall time (s) | runs' own time, sum (s) | per-run peak memory (MB) | scores "
        f"({', '.join(keys)}) | numbers = `{REFERENCE}` |",
        "|---|---:|---:|---|---|---|",
    ]
    for name, result in results.items():
        runs = result["runs"]
        peaks = [runs[k]["peak_mb"] for k in keys]
        same = all(runs[k]["numbers"] == reference[k] for k in keys)
        differing = [k for k in keys if runs[k]["numbers"] != reference[k]]
        verdict = "reference" if name == REFERENCE else ("yes, bit for bit" if same else f"no: {', '.join(differing)}")
        scores = ", ".join(f"{runs[k]['score']:.4f}" for k in keys)
        lines.append(
            f"| `{name}` | {result['wall']:.0f} | {sum(runs[k]['seconds'] for k in keys):.0f} | "
            f"{min(peaks):.0f}-{max(peaks):.0f} | {scores} | {verdict} |"
        )
    lines += [
        "",
        "Wall time is the whole compare (plan, runs, report; for `ray` also starting and stopping its local "
        "instance); a run's own time and peak memory are measured by the run's own process. "
        + (f"A local Ray instance alone takes {ray_start:.1f} s to start and stop here. " if ray_start else "")
        + f"`serial` leaves the thread count to torch ({os.cpu_count()} threads here) where the others run 1 "
        "thread per run: float sums in another order change the last digits of a loss, and over several epochs "
        "can change a few predictions (the scores above); with the same --run-cpus every executor gives the same "
        "numbers bit for bit.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 epoch; print the table, write nothing")
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    folder = Path(tempfile.mkdtemp(prefix="tunelab-executors-"))
    try:
        load_before = os.getloadavg()[0]
        results = {name: run_side(name, folder / name.replace(" ", "_"), epochs) for name in SIDES}
        ray_start = ray_start_seconds()
        text = table(results, epochs, ray_start, (load_before, os.getloadavg()[0]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(text)
    if not args.quick:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "executors.md").write_text(text)


if __name__ == "__main__":
    main()
