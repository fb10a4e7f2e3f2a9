"""Ground truth for the advisor: a fair `tunelab compare` of the candidate strategies on every case.

For each case of `benchmarks/advice_cases.py`: `tunelab compare` of the candidates below, 2 seeds, the
case's epochs (equal for every strategy), one augmentation policy, validation split off the training data
(it picks each run's best epoch), scored once on the dataset's test set, which the advisor never sees.
Each compare runs its runs two at a time (WORKERS); a finished run is skipped when the suite is run again, so an
interrupted suite continues, and adding a strategy to CANDIDATES later trains only the new runs.
`<out>/<case>/truth.json` holds every run's test score, time and peak memory, read from the runs'
summary.json files: the advisor's hit rate is scored from these files without retraining.

Run: python benchmarks/advice_ground_truth.py --out DIR [--cases a,b] [--half tuning|evaluation]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from advice_cases import CASES, Case, prepare
from tunelab.comparison.grid import slug

SEEDS = 2
WORKERS = 2
"""Runs at a time, one thread each (`--executor local`): on 2 cores, twice the throughput of one 2-thread run
for these small models. Threads change the last digits of a float sum, not what a comparison concludes."""


def candidates(case: Case) -> tuple[str, ...]:
    """The strategies whose best the advice is scored against: the four classic ones, two depths of retrain.

    The two depths are a third and two thirds of the blocks (CNNs: 9 blocks; MiniLM: 7, the first of
    which is the embedding lookup); the advisor chooses its K among them.
    """
    ks = (2, 4) if case.model == "minilm-l6" else (3, 6)
    return ("none", *(f"retrain:{k}" for k in ks), "full", "adapter", "lora")


def run_dir(case_dir: Path, strategy: str, seed: int) -> Path:
    """Where `run_compare` into case_dir/compare puts a strategy's run of one seed (compare's own folder names)."""
    return case_dir / "compare" / "runs" / "fraction-1" / slug(strategy) / f"s{seed}"


def compare(case: Case, out: Path) -> None:
    data = prepare(case, out / "data")
    run_compare(
        case.model, data.train, data.test, candidates(case), case.epochs, SEEDS, out / case.name / "compare",
        case.image_size,
    )  # fmt: skip


def run_compare(
    model: str,
    train: Path,
    test: Path,
    strategies: tuple[str, ...],
    epochs: int,
    seeds: int,
    out: Path,
    image_size: int | None,
) -> None:
    """`tunelab compare` as every suite benchmark runs it (also recipes.py): test set, WORKERS local runs at a
    time, the case's image size, MiniLM at 64 tokens, in plain shuffled batches and with the checkpoint's
    attention dropout (how the suite's runs were trained before --length-grouping and --attention-dropout 0
    became the defaults, so they stay reusable). A failed compare is reported by its own output, not raised."""
    args = [
        "--model", model, "--data", str(train), "--test-data", str(test),
        "--strategies", ",".join(strategies), "--epochs", str(epochs), "--seeds", str(seeds),
        "--out", str(out), "--executor", "local", "--workers", str(WORKERS),
    ]  # fmt: skip
    if image_size is not None:
        args += ["--image-size", str(image_size)]
    if model == "minilm-l6":
        args += ["--max-length", "64", "--no-length-grouping", "--attention-dropout", "0.1"]
    print(f"$ tunelab compare {' '.join(args)}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "tunelab", "compare", *args], check=False)


def truth(case: Case, out: Path) -> dict | None:
    """The case's ground truth from its runs' summaries; None while a run is missing."""
    case_dir, runs = out / case.name, {}
    for strategy in candidates(case):
        for seed in range(SEEDS):
            summary = run_dir(case_dir, strategy, seed) / "summary.json"
            if not summary.is_file():
                return None
            s = json.loads(summary.read_text())
            runs.setdefault(strategy, []).append(
                {
                    "seed": seed,
                    "score": s["score"],
                    "metric": s["metric"],
                    "scored_on": s["scored_on"],
                    "flags": s["flags"],
                    "train_seconds": s["train_seconds"],
                    "peak_memory_mb": s["peak_memory_mb"],
                    "trainable_params": s["trainable_params"],
                }
            )
    return {
        "case": case.name,
        "half": case.half,
        "model": case.model,
        "dataset": case.dataset,
        "train_size": case.train_size,
        "epochs": case.epochs,
        "image_size": case.image_size,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/advice-suite", help="working folder (data, runs); resumable")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--half", choices=("tuning", "evaluation"), help="only the cases of one half")
    args = parser.parse_args()
    wanted = set(filter(None, args.cases.split(",")))
    unknown = wanted - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    out = Path(args.out)
    for i, case in enumerate(CASES, 1):
        if (wanted and case.name not in wanted) or (args.half and case.half != args.half):
            continue
        target = out / case.name / "truth.json"
        if target.is_file():
            continue
        started = time.perf_counter()
        compare(case, out)
        found = truth(case, out)
        if found is None:
            print(f"[{i}/{len(CASES)}] {case.name}: runs missing (a run failed?); see its compare output", flush=True)
            continue
        target.write_text(json.dumps(found, indent=1))
        means = {k: sum(r["score"] for r in v) / len(v) for k, v in found["runs"].items()}
        best = max(means, key=means.get)
        print(
            f"[{i}/{len(CASES)}] {case.name}: best {best} {means[best]:.3f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
