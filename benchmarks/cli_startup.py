"""CLI start-up: how long the `tunelab` command takes to answer what a user waits for at the prompt.

Each command runs N times, each time in a fresh process (the installed `tunelab` script, as a user runs it),
the commands interleaved; the table shows the median and the range of wall-clock times, and whether the
command imported torch (from one extra `python -X importtime` run). `import torch` alone and an empty
interpreter are measured the same way, as the ceiling to stay far below and the floor.

Run: python benchmarks/cli_startup.py [--runs N] [--quick]   (--quick: 3 runs, prints the table, writes nothing)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TUNELAB = Path(sys.executable).with_name("tunelab")
"""The console script pip installed next to this interpreter: what a user types."""

COMMANDS = {
    "tunelab --help": ["--help"],
    "tunelab train --help": ["train", "--help"],
    "tunelab --version": ["--version"],
    "tunelab train --epochs x (flag error)": ["train", "--epochs", "x"],
    "tunelab models": ["models"],
}
"""Row label -> arguments after `tunelab`."""

REFERENCES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "python -c 'import torch' (ceiling)": [sys.executable, "-c", "import torch"],
}
"""Row label -> a whole command line, timed like the commands."""


def command_line(label: str) -> list[str]:
    return REFERENCES[label] if label in REFERENCES else [str(TUNELAB), *COMMANDS[label]]


def seconds(argv: list[str]) -> float:
    """Wall-clock time of one fresh process, output discarded (exit codes 0 and 2 are both answers)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 2):
        raise RuntimeError(f"{' '.join(argv)} failed with exit code {done.returncode}")
    return elapsed


def imports_torch(label: str) -> str:
    """'yes'/'no' from `python -X importtime`: did the command import torch at all."""
    if label in REFERENCES:
        argv = [sys.executable, "-X", "importtime", *REFERENCES[label][1:]]
    else:
        script = (
            f"import sys; sys.argv = ['tunelab', *{COMMANDS[label]!r}]; from tunelab.cli import main; sys.exit(main())"
        )
        argv = [sys.executable, "-X", "importtime", "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return "yes" if "torch" in modules else "no"


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (default: 7)")
    parser.add_argument("--quick", action="store_true", help="3 runs; print the table, write nothing")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    labels = [*COMMANDS, *REFERENCES]
    load_before = os.getloadavg()[0]
    for label in labels:
        seconds(command_line(label))  # warm the file cache: every timed run then starts from the same state
    times: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(runs):
        for label in labels:
            times[label].append(seconds(command_line(label)))
        print(f"  round {i + 1}/{runs} done", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]
    rows = [
        f"| {label} | {statistics.median(times[label]):.2f} | {min(times[label]):.2f}-{max(times[label]):.2f} "
        f"| {imports_torch(label)} |"
        for label in labels
    ]
    intro = (
        f"`tunelab` start-up: wall-clock seconds of a fresh process, median (min-max) of {runs} runs, "
        f"commands interleaved after one warm-up run each. Machine: {machine()}; "
        f"1-minute load average {load_before:.1f} at the start, {load_after:.1f} at the end."
    )
    header = ["| command | median s | range s | imports torch |", "|---|---:|---:|---|"]
    text = "\n".join([intro, "", *header, *rows]) + "\n"
    print(text)
    if not args.quick:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "cli_startup.md").write_text(text)


if __name__ == "__main__":
    main()
