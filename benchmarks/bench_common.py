"""What every benchmark script shares: interleaved repetitions in fresh processes, medians, the machine line, tables.

A benchmark script is both a driver and a worker. Run plainly, it is the driver: for each repetition it
runs every side once, in the order A B, then B A, and so on, so that load from other users of a shared machine
falls on all sides alike, each side in a fresh Python process (`--side NAME`) so peak memory and
allocator state belong to that side alone. The worker prints one `RESULT {json}` line; the driver
collects them, takes medians, and writes its table between `<!-- name:begin -->` and `<!-- name:end -->`
in benchmarks/README.md (and to benchmarks/results/name.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "shared" / "datasets"
RESULT = "RESULT "


def driver_parser(
    doc: str, sides: Sequence[str], repetitions: int, batch_size: int, worker_fields: Sequence[str]
) -> argparse.ArgumentParser:
    """The options every driver/worker script takes; the script adds its own (sizes, epochs, seed).

    `worker_fields` are the hidden options a driver passes to the worker it starts (e.g. --model, --data).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition, README untouched")
    parser.add_argument("--repetitions", type=int, default=repetitions)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--from-log", help="rebuild the table from a driver log (a run stopped early) instead of running"
    )
    parser.add_argument("--side", choices=sides, help=argparse.SUPPRESS)
    for name in worker_fields:
        parser.add_argument(name, help=argparse.SUPPRESS)
    return parser


def emit(result: dict) -> None:
    """Worker side: hand a result to the driver."""
    print(RESULT + json.dumps(result), flush=True)


def run_worker(script: str, side: str, args: Sequence[str], label: str = "") -> dict:
    """Run `script --side side args...` in a fresh interpreter and return the dict it emitted."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, script, "--side", side, *args], check=False, capture_output=True, text=True, env=env
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"{Path(script).name} --side {side} failed with exit code {done.returncode}")
    result = json.loads(lines[-1][len(RESULT) :])
    print(f"  {label}{side}: {_brief(result)} ({time.perf_counter() - started:.0f}s with start-up)", flush=True)
    return result


def interleaved(
    sides: Sequence[str], repetitions: int, run: Callable[[str, int], dict], label: str = ""
) -> dict[str, list[dict]]:
    """run(side, repetition) for repetition 0..n-1, every side once per repetition.

    The order reverses every other repetition (A B, B A, A B, ...) so a load that rises or falls during the
    run does not always land on the same side.
    """
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for rep in range(repetitions):
        print(f"{label}repetition {rep + 1}/{repetitions} (load average {os.getloadavg()[0]:.1f})", flush=True)
        for side in sides if rep % 2 == 0 else reversed(sides):
            results[side].append(run(side, rep))
    return results


def strategy_sides(
    script: str, sides: Sequence[str], repetitions: int, strategy: str, fields: Sequence[str], seed: int = 0
) -> dict[str, list[dict]]:
    """One strategy on every side, `interleaved`: each run a fresh `script --side` worker given `fields`,
    `--strategy strategy` and `--seed seed + repetition` (one seed per repetition, the same on every side)."""

    def one(side: str, rep: int) -> dict:
        args = ["--strategy", strategy, *fields, "--seed", str(seed + rep)]
        return run_worker(script, side, args, f"{strategy} ")

    return interleaved(sides, repetitions, one, f"{strategy} ")


def run_cases(function: Callable, cases: Sequence) -> list:
    """function(case) for every case, one after another, results in order.

    Cases run one at a time, so that a case's timings are not shared with another case's processes (an
    earlier version ran them at once to fit a loaded machine; its tables said so).
    """
    return [function(case) for case in cases]


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def paired_ratio(a: list[dict], b: list[dict], key: str) -> str:
    """Median (min-max) over repetitions of a[i][key] / b[i][key]: each pair ran back to back, so a load that
    drifts over the whole run cancels within a pair, where the ratio of the two sides' medians keeps it."""
    ratios = [x[key] / y[key] for x, y in zip(a, b)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def spread(results: list[dict], key: str) -> str:
    """'min-max' of a key over repetitions, to show the noise next to a median."""
    values = [r[key] for r in results]
    return f"{min(values):.3f}-{max(values):.3f}"


def setting_table(new: str, old: str, rows: Sequence[tuple[str, list[dict], list[dict]]]) -> list[str]:
    """The table of a tunelab setting measured against its other value, tunelab on both sides (the benchmarks
    that decided a default: length_grouping.py, attention_dropout.py): per (case, new side's results, old
    side's), the epoch time ratio and its paired ratios, both sides' s/epoch, the end-to-end paired ratio,
    both sides' accuracy with its seed range and both peaks. `new` and `old` name the sides in the header."""
    lines = [
        f"| strategy | epoch time ratio ({new} / {old}) | paired, median (min-max) | {new} s/epoch | {old} s/epoch "
        f"| end-to-end paired ratio | {new} val acc (min-max) | {old} val acc (min-max) | {new} peak MB "
        f"| {old} peak MB | reps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, n, o in rows:
        lines.append(
            f"| {case} | {median(n, 'epoch_s') / median(o, 'epoch_s'):.2f} | {paired_ratio(n, o, 'epoch_s')} | "
            f"{median(n, 'epoch_s'):.1f} | {median(o, 'epoch_s'):.1f} | {paired_ratio(n, o, 'total_s')} | "
            f"{median(n, 'accuracy'):.3f} ({spread(n, 'accuracy')}) | {median(o, 'accuracy'):.3f} ({spread(o, 'accuracy')}) | "
            f"{median(n, 'peak_mb'):.0f} | {median(o, 'peak_mb'):.0f} | {len(o)} |"
        )
    return lines


def set_threads(threads: int) -> None:
    """The same intra-op thread count on every side."""
    import torch

    torch.set_num_threads(threads)


def machine(threads: int) -> str:
    """One line naming the machine a table was measured on."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"{os.cpu_count()} cores ({model}), {threads} threads, torch {torch.__version__}"


def load_note(before: float, after: float, from_log: bool = False) -> str:
    """The load during a run; a table rebuilt with --from-log also says its values are the log's rounded ones."""
    note = f"1-minute load average {before:.1f} at the start, {after:.1f} at the end"
    return note + (". Rebuilt from the driver's log (values to 3 significant digits)" if from_log else "")


def write_table(name: str, text: str, quick: bool, add_section: bool = True) -> None:
    """Print the table; unless quick, also write results/<name>.md and the README section between its markers.

    Without the markers in benchmarks/README.md, `add_section` appends them (and the table) at the README's end;
    `add_section=False` is for tables that have no place there yet: their README section is filled in only once
    someone puts `<!-- name:begin -->` and `<!-- name:end -->` where the table should go.
    """
    text = text.rstrip("\n") + "\n"
    print(text)
    if quick:
        return
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.md").write_text(text)
    readme = HERE / "README.md"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if begin not in content or end not in content:
        if not add_section:
            return
        content = content.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, rest = content.split(begin)
    _, tail = rest.split(end)
    readme.write_text(f"{head}{begin}\n{text}{end}{tail}")


def _brief(result: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())


@dataclass(frozen=True)
class BenchData:
    """The data every comparison measures on, written once per driver run into a temporary folder."""

    images: Path
    """A hymenoptera tree (train/ and val/, ants and bees)."""
    images_what: str
    sst2_train: Path
    sst2_dev: Path
    sentences_what: str


FULL_SIZES = ((None, None), (1000, 400))
"""All of hymenoptera (its 243/153 .jpg images) and 1000 shuffled SST-2 training / the first 400 dev sentences:
large enough that an epoch takes tens of seconds (per-step overheads and start-up cannot hide in it) and that
the text strategies learn something in two epochs, small enough that `make bench` takes about 70 minutes on
2 idle cores."""
QUICK_SIZES = ((2, 1), (16, 8))


def bench_data(folder: Path, quick: bool) -> BenchData:
    """The benchmark data, at full or --quick sizes."""
    (train_images, val_images), (train_rows, dev_rows) = QUICK_SIZES if quick else FULL_SIZES
    images = image_subset(folder / "hymenoptera", train_images, val_images)
    sst2_train, sst2_dev = text_subset(folder / "sst2", train_rows, dev_rows)
    n_train, n_val = (len(list((images / split).glob("*/*.jpg"))) for split in ("train", "val"))
    whole = "" if train_images is None else " subset"
    return BenchData(
        images,
        f"hymenoptera{whole} ({n_train}/{n_val} train/val images)",
        sst2_train,
        sst2_dev,
        f"SST-2 subset ({train_rows}/{dev_rows} train/dev sentences)",
    )


def text_subset(folder: Path, train_rows: int, val_rows: int, seed: int = 0) -> tuple[Path, Path]:
    """SST-2 subset files every side reads: `train_rows` shuffled training sentences, the first `val_rows` dev ones."""
    import random

    source = DATASETS / "sst2"
    header, *rows = (source / "train.tsv").read_text().splitlines(keepends=True)
    random.Random(seed).shuffle(rows)
    dev_header, *dev_rows = (source / "dev.tsv").read_text().splitlines(keepends=True)
    folder.mkdir(parents=True, exist_ok=True)
    train, val = folder / "train.tsv", folder / "dev.tsv"
    train.write_text(header + "".join(rows[:train_rows]))
    val.write_text(dev_header + "".join(dev_rows[:val_rows]))
    return train, val


def image_subset(folder: Path, train_per_class: int | None, val_per_class: int | None) -> Path:
    """A hymenoptera tree of symbolic links: the first n JPEGs (sorted by name) per class and split (None: all)."""
    source = DATASETS / "hymenoptera"
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for cls in ("ants", "bees"):
            out = folder / split / cls
            out.mkdir(parents=True, exist_ok=True)
            for image in sorted((source / split / cls).glob("*.jpg"))[:n]:
                (out / image.name).symlink_to(image)
    return folder


def results_from_log(path: Path) -> dict[str, dict[str, list[dict]]]:
    """The per-run results a driver printed, by case label and side: rebuilds a table after a run stopped early.

    Values come back with the 3 significant digits the driver printed.
    """
    import re

    line_format = re.compile(r"^  (\S+) (\S+): (.*) \(\d+s with start-up\)$")
    found: dict[str, dict[str, list[dict]]] = {}
    for line in Path(path).read_text().splitlines():
        match = line_format.match(line)
        if match:
            label, side, fields = match.groups()
            result = {}
            for field in fields.split(", "):
                key, value = field.split(" ", 1)
                try:
                    result[key] = float(value)
                except ValueError:
                    result[key] = value
            found.setdefault(label, {}).setdefault(side, []).append(result)
    return found


def complete_repetitions(results: dict[str, list[dict]], sides: Sequence[str]) -> dict[str, list[dict]]:
    """Keep only repetitions every side finished (a stopped run may have one side's last run and not the other's)."""
    n = min(len(results.get(side, [])) for side in sides)
    return {side: results.get(side, [])[:n] for side in sides}


def loads_in_log(path: Path) -> tuple[float, float]:
    """The first and last load averages a driver printed at the start of its repetitions."""
    import re

    loads = [float(x) for x in re.findall(r"load average (\d+\.\d)", Path(path).read_text())]
    return loads[0], loads[-1]
