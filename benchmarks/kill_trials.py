"""Stop `tunelab train` at random moments, then `--resume`: does every run still end exactly as if never stopped?

Each trial starts a real `tunelab train` process on a tiny model (forked from this script once it has
imported tunelab, to skip interpreter start-up) and stops it one of three ways:

- SIGKILL (no handler runs, nothing is flushed) at a uniformly random moment of its training span;
  resumed processes are killed again with probability 1/3;
- SIGTERM at a random moment: the process must stop by itself as after Ctrl-C, exit 143 with its error
  line on a line of its own, and leave its last committed epoch (or, before the first, nothing at all);
- a full disk: from a random moment no file it writes may grow past a random size (RLIMIT_FSIZE, which
  fails the write in the kernel as a full disk does), so a write of config.yaml, metrics, model, optimizer
  state or spilled feature cache fails part-way: one error line, exit 2, the last committed epoch intact,
  no temporary file or partial epoch folder.

Then it resumes until the run is complete. After every stop the committed checkpoint (checkpoint/latest)
must load in full; at the end the metrics (minus wall-clock seconds), the saved weights (bit for bit) and
the summary must equal those of an uninterrupted run of the same command, and no temporary file, cache or
checkpoint may be left in the run directory.

The three setups cover the three ways a run saves state: `full` on tiny-cnn (every weight and AdamW
moment), `retrain:2` with the feature cache spilled to disk (`--cache-memory-mb 0`), and `lora:2` on
tiny-bert (text, PEFT modules).

Run: .venv/bin/python benchmarks/kill_trials.py [--trials 10] [--term-trials 3] [--disk-trials 3] [--seed 0] [--quick]
Writes benchmarks/results/kill_trials.md and the table between the markers in benchmarks/README.md;
with --quick, one SIGKILL trial per setup, one SIGTERM and one disk-full trial, and the table is only
printed (README untouched).
"""

from __future__ import annotations

import os

os.environ.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")  # before torch is imported

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm.auto import tqdm as auto_tqdm  # noqa: E402
from tqdm.std import TqdmDefaultWriteLock, tqdm  # noqa: E402

import tunelab.cli  # noqa: E402, F401 - imported once here, so every forked run starts with it loaded
from tunelab.fileio import load_json  # noqa: E402
from tunelab.runs.checkpoint_io import load_tensors  # noqa: E402

HERE = Path(__file__).resolve().parent
SETUPS = [("tiny-cnn", "full", ()), ("tiny-cnn", "retrain:2", ("--cache-memory-mb", "0")), ("tiny-bert", "lora:2", ())]
"""(model, strategy, extra flags) cycled over the trials."""
SUMMARY_KEYS = (
    "score",
    "best_epoch",
    "epochs",
    "trainable_params",
    "train_examples",
    "val_examples",
    "classes",
    "metrics_last",
)
"""Summary fields that must match the uninterrupted run (times and memory may differ)."""


def write_data(root: Path) -> dict[str, Path]:
    """Two learnable classes as 40x40 images and as a small sentiment TSV."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["blue", "red"]):
        (root / "img" / name).mkdir(parents=True)
        for i in range(16):
            pixels = rng.integers(0, 90, size=(40, 40, 3))
            pixels[..., 2 if c == 0 else 0] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(root / "img" / name / f"{i}.png")
    good = ["good movie", "great film", "fun story", "best acting", "great fun", "good plot"]
    bad = ["bad movie", "awful film", "boring story", "worst acting", "awful plot", "bad and boring"]
    rows = ["sentence\tlabel"] + [f"{s} {i}\t1" for i in range(3) for s in good]
    rows += [f"{s} {i}\t0" for i in range(3) for s in bad]
    (root / "text.tsv").write_text("\n".join(rows) + "\n")
    return {"tiny-cnn": root / "img", "tiny-bert": root / "text.tsv"}


def command(
    model: str, strategy: str, extra: tuple[str, ...], data: Path, out: Path, epochs: int, resume: bool
) -> list[str]:
    return [
        "train",
        "--model",
        model,
        "--strategy",
        strategy,
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--seed",
        "0",
        *extra,
        *(["--resume"] if resume else []),
    ]


@dataclass
class Outcome:
    """One process: did it finish by itself, and when its training started and ended (monotonic seconds)."""

    returncode: int
    """Its exit code (negative: the signal that ended it)."""
    killed: bool
    """Whether it was sent the signal (it had not finished by then)."""
    ready_at: float | None
    ended_at: float
    stderr: str


class Forked:
    """`tunelab ARGS` in a child process forked from this one, which has imported tunelab already.

    The child is a real process that SIGKILL ends with no handler running, like `python -m tunelab`, but it
    skips the ~10 s of imports each new interpreter pays (which is most of a tiny run on a shared CPU).
    The interface is the part of subprocess.Popen that `run` uses.
    """

    def __init__(self, args: list[str], file_limit: int | None = None, full_now: bool = False):
        read_fd, write_fd = os.pipe()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: stderr into the pipe, stdout away, run the command, exit without cleanup
            os.close(read_fd)
            os.dup2(write_fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            # New streams over the new fds: the parent's may not write to fds 1 and 2 at all (pytest's capture).
            sys.stdout = os.fdopen(1, "w", encoding="utf-8", closefd=False)
            sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
            # A lock held at the fork by another thread of the parent, or a process-shared one, can block the
            # child for ever; tqdm's write lock (a class-level thread lock plus a multiprocessing one) hung
            # CI that way. The child is single-threaded: a fresh thread lock and no process lock.
            TqdmDefaultWriteLock.th_lock = threading.RLock()
            TqdmDefaultWriteLock.mp_lock = None
            for bar_class in (tqdm, auto_tqdm):
                bar_class.set_lock(TqdmDefaultWriteLock())
            if file_limit is not None:  # a full disk, as the kernel reports it: writes past the limit fail
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # with EFBIG, instead of the default kill

                def fill_disk(*_) -> None:
                    resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

                if full_now:
                    fill_disk()
                else:
                    signal.signal(FILL_DISK, fill_disk)  # the disk fills up when the parent says so
            code = 1
            try:
                torch.set_num_threads(1)  # never touch an OpenMP pool the parent may have started
                from tunelab.cli import main

                code = main(args)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        # newline="": carriage returns kept, so the output can be checked as `grep` would see a log of it
        self.stderr = os.fdopen(read_fd, encoding="utf-8", errors="replace", newline="")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(["tunelab"], timeout)
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


FILL_DISK = signal.SIGUSR1
"""Sent to a child started with a file limit: from then on no file it writes may grow past the limit."""


def run(
    argv: list[str], kill_after: float | None = None, sig: int = signal.SIGKILL, file_limit: int | None = None
) -> Outcome:
    """Run `tunelab argv`; with `kill_after`, send it `sig` that many seconds after it starts training (if
    running) and wait for it to end. With `file_limit`, FILL_DISK (sent as `sig`, or at once when `kill_after`
    is None) makes every write that would grow a file past that many bytes fail."""
    proc = Forked(argv, file_limit, full_now=kill_after is None)
    ready = threading.Event()
    ready_at: list[float] = []
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if not ready.is_set() and ("trainable params" in line or "already complete" in line):
                ready_at.append(time.monotonic())
                ready.set()
        ready.set()  # exited without training

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    killed = False
    if kill_after is not None:
        ready.wait()
        if proc.poll() is None and not _wait(proc, kill_after):
            proc.send_signal(sig)
            killed = True
    proc.wait()
    ended = time.monotonic()
    reader.join()
    started = ready_at[0] if ready_at else None
    return Outcome(proc.returncode, killed, started, ended, "".join(lines))


def _wait(proc: Forked, seconds: float) -> bool:
    """True when the process exits within `seconds`."""
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def checkpoint_state(out: Path) -> str:
    """What a killed run left: 'complete', 'epoch N' (committed checkpoint loads in full), or 'none'.

    Raises AssertionError when the committed checkpoint is corrupt: the one thing a kill must never cause.
    """
    if (out / "summary.json").is_file():
        return "complete"
    latest = out / "checkpoint" / "latest"
    if not latest.is_file():
        return "none"
    name = latest.read_text()
    folder = out / "checkpoint" / name
    assert re.fullmatch(r"epoch-\d{4}", name), f"pointer holds {name!r}"
    load_tensors(folder / "trained.safetensors")
    load_tensors(folder / "optimizer.safetensors")
    state = load_json(folder / "state.json")
    assert state["epoch"] == int(name.removeprefix("epoch-")) and len(state["metrics"]) == state["epoch"]
    return f"epoch {state['epoch']}"


def _metrics(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def _timeless(value):
    """A summary value without wall-clock fields (metrics_last holds the epoch's seconds)."""
    return {k: v for k, v in value.items() if k != "seconds"} if isinstance(value, dict) else value


def same_as(out: Path, reference: Path) -> dict[str, bool]:
    """Which of metrics, weights, summary match the reference run, and whether the run directory is clean."""
    a, _ = load_tensors(out / "model.safetensors")
    b, _ = load_tensors(reference / "model.safetensors")
    sa, sb = load_json(out / "summary.json"), load_json(reference / "summary.json")
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    leftovers += [p for p in (out / "checkpoint", out / "cache") if p.exists()]
    return {
        "metrics": _metrics(out) == _metrics(reference),
        "weights": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
        "summary": all(_timeless(sa[k]) == _timeless(sb[k]) for k in SUMMARY_KEYS),
        "clean": not leftovers,
    }


@dataclass
class Trial:
    setup: str
    kills: list[tuple[float, str]]
    """(seconds into training at the kill, what the checkpoint held afterwards); for a disk-full trial the
    file-size limit in bytes."""
    resumes: int
    resume_ok: bool
    match: dict[str, bool]
    kind: str = "SIGKILL"
    """How the first process was stopped: SIGKILL, SIGTERM or 'disk full'."""
    stop_problems: tuple[str, ...] = ()
    """What was wrong with how a SIGTERM or a full disk stopped it (exit code, error line, what it left)."""

    @property
    def passed(self) -> bool:
        return self.resume_ok and all(self.match.values()) and not self.stop_problems


TEMP_FILE = re.compile(r"\..+\.tmp|\.tmp[A-Za-z0-9]{6}")
"""Temporary files of atomic writes (tunelab's and safetensors' own): none may outlive the process."""


def stop_problems(out: Path, outcome: Outcome, code: int, error: str) -> tuple[str, list[str]]:
    """What a process that stopped by itself (SIGTERM, a full disk) left, and everything wrong with how it stopped.

    It must exit with `code`, print exactly one error line matching `error` that starts a line of its own (as
    `grep '^tunelab: error'` finds it) and no traceback, and leave a committed checkpoint that loads or nothing
    at all: no temporary file, feature cache, lock file or epoch folder beside the committed one.
    """
    state = checkpoint_state(out)
    # On a fast machine the run can finish before the stop lands (a signal after the end, a file-size limit never
    # reached): exit 0 and a complete run is a clean outcome too; what it left is still checked below.
    finished_first = outcome.returncode == 0 and state == "complete"
    problems = (
        [] if outcome.returncode == code or finished_first else [f"exit code {outcome.returncode}, expected {code}"]
    )
    errors = [line for line in outcome.stderr.split("\n") if line.startswith("tunelab: error: ")]
    if finished_first:
        if errors or "Traceback" in outcome.stderr:
            problems.append(f"a finished run printed error lines {errors[-2:]}")
    elif len(errors) != 1 or not re.search(error, errors[0]) or "Traceback" in outcome.stderr:
        problems.append(f"error lines {errors[-2:]}" if errors else "no error line of its own")
    if state == "none" and out.exists():
        problems.append(f"left {sorted(p.name for p in out.iterdir())} without a committed epoch")
    if out.exists():
        problems += [f"left {p.relative_to(out)}" for p in out.rglob("*") if TEMP_FILE.fullmatch(p.name)]
        problems += [f"left {name}" for name in ("cache", ".tunelab.lock") if (out / name).exists()]
        latest = out / "checkpoint" / "latest"
        folders = sorted(p.name for p in (out / "checkpoint").glob("epoch-*"))
        # a complete run (summary.json) stopped while tidying its checkpoints up: the next start finishes the tidying
        # (train's "already complete" path), so only an unfinished run must hold exactly its committed epoch
        if state != "complete" and folders and (not latest.is_file() or folders != [latest.read_text()]):
            problems.append(f"epoch folders {folders} beside the committed one")
    return state, problems


def run_trials(
    trials: int,
    seed: int,
    epochs: int,
    workdir: Path,
    log=print,
    on_trial=lambda results: None,
    term_trials: int = 0,
    disk_trials: int = 0,
) -> list[Trial]:
    """The uninterrupted reference per setup, then `trials` kill-and-resume trials (setups cycled), then
    `term_trials` SIGTERM trials and `disk_trials` disk-full trials (setups cycled from the second)."""
    rng = random.Random(seed)
    data = write_data(workdir / "data")
    plan = [("SIGKILL", t % len(SETUPS)) for t in range(trials)]
    plan += [("SIGTERM", t % len(SETUPS)) for t in range(term_trials)]
    plan += [("disk full", (t + 1) % len(SETUPS)) for t in range(disk_trials)]
    references: dict[int, tuple[Path, float]] = {}
    for i in sorted({index for _, index in plan}):
        model, strategy, extra = SETUPS[i]
        out = workdir / f"reference-{i}"
        outcome = run(command(model, strategy, extra, data[model], out, epochs, resume=False))
        assert outcome.returncode == 0 and outcome.ready_at is not None, outcome.stderr[-3000:]
        references[i] = (out, outcome.ended_at - outcome.ready_at)
        log(f"reference {model} {strategy}: {references[i][1]:.1f} s of training")
    results = []
    for t, (kind, index) in enumerate(plan):
        model, strategy, extra = SETUPS[index]
        reference, span = references[index]
        out = workdir / f"trial-{t}"

        argv = functools.partial(command, model, strategy, extra, data[model], out, epochs)  # (resume) -> argv

        if kind == "SIGKILL":
            kills, resumes, outcome = _kill_and_resume(argv, span, rng, out)
            problems: list[str] = []
        else:
            stop = _sigterm if kind == "SIGTERM" else _disk_full
            kills, problems = stop(argv, span, rng, out, reference)
            outcome = run(argv(resume=True))  # the disk has room again: no limit
            resumes = 1
        ok = outcome.returncode == 0
        failed = {"metrics": False, "weights": False, "summary": False, "clean": False}
        match = same_as(out, reference) if ok else failed
        trial = Trial(f"{model} {strategy}", kills, resumes, ok, match, kind, tuple(problems))
        results.append(trial)
        on_trial(results)
        log(
            f"trial {t} ({kind}): {trial.setup}, stops {[(round(d, 2), s) for d, s in kills]}, problems {problems}, "
            f"resume ok {ok}, {match}" + ("" if ok else "\n" + outcome.stderr[-2000:])
        )
    return results


def _kill_and_resume(argv, span: float, rng: random.Random, out: Path):
    """SIGKILL the first process (started again until it is), each resumed one with probability 1/3 (at most 3
    kills), then resume until the run completes. Returns (kills, resumes, the last outcome)."""
    kills: list[tuple[float, str]] = []
    resumes, resume = 0, False
    while True:
        kill = not kills or (len(kills) < 3 and rng.random() < 1 / 3)
        delay = rng.uniform(0, 0.95 * span)
        outcome = run(argv(resume), kill_after=delay if kill else None)
        resumes += resume
        if not outcome.killed and not kills and outcome.ready_at is not None:
            span = 0.9 * (outcome.ended_at - outcome.ready_at)  # it finished first (a quiet machine): kill sooner
            shutil.rmtree(out)
            continue
        if not outcome.killed:
            return kills, resumes, outcome
        kills.append((delay, checkpoint_state(out)))
        resume = True


def _sigterm(argv, span: float, rng: random.Random, out: Path, reference: Path):
    """SIGTERM at a random moment of training: the process must stop by itself as after Ctrl-C (exit 143, the
    --resume hint on a line of its own) and leave its last committed epoch, or nothing before the first."""
    while True:
        delay = rng.uniform(0, 0.95 * span)
        outcome = run(argv(False), kill_after=delay, sig=signal.SIGTERM)
        if outcome.killed or outcome.ready_at is None:
            break
        span = 0.9 * (outcome.ended_at - outcome.ready_at)  # it finished first: signal sooner
        shutil.rmtree(out)
    state, problems = stop_problems(out, outcome, 143, r"^tunelab: error: interrupted")
    return [(delay, state)], problems


def _disk_full(argv, span: float, rng: random.Random, out: Path, reference: Path):
    """A disk that fills up: from a random moment of training (or, one time in three, from the start) no file
    the process writes may grow past a random size. RLIMIT_FSIZE makes the kernel fail such a write part-way,
    as it fails one on a full disk (with EFBIG instead of ENOSPC). The size is drawn log-uniformly from 256
    bytes to a few times the saved model, so the failing write is config.yaml, metrics, the model, the
    optimizer state or the spilled feature cache, in whichever epoch the moment falls. When no write failed,
    the trial is drawn again. The process must stop with one error line (exit 2) and leave its last committed
    epoch whole, or nothing."""
    high = 4 * (reference / "model.safetensors").stat().st_size + 8192
    while True:
        limit = int(math.exp(rng.uniform(math.log(256), math.log(high))))
        delay = None if rng.random() < 1 / 3 else rng.uniform(0, 0.95 * span)
        outcome = run(argv(False), kill_after=delay, sig=FILL_DISK, file_limit=limit)
        if outcome.returncode != 0:
            break
        shutil.rmtree(out)  # every write fitted, or it finished before the disk filled up
    state, problems = stop_problems(out, outcome, 2, r"File too large|No space left on device")
    failed = re.search(r"(?:cannot write|feature cache to) (\S+?)(?::| \()", outcome.stderr)
    where = (
        Path(failed.group(1)).relative_to(out).as_posix() if failed and out in Path(failed.group(1)).parents else "?"
    )
    moment = "from the start" if delay is None else f"at {delay:.2f} s"
    return [(float(limit), f"{state} (full {moment}, writing {where})")], problems


def table(results: list[Trial], epochs: int) -> str:
    kills = sum(len(r.kills) for r in results if r.kind == "SIGKILL")
    kinds = {kind: sum(r.kind == kind for r in results) for kind in ("SIGKILL", "SIGTERM", "disk full")}
    lines = [
        f"{len(results)} trials ({', '.join(f'{n} {k}' for k, n in kinds.items())}), {kills} SIGKILLs, "
        f"{epochs} epochs per run, batch 4, 1 thread per process, {os.cpu_count()} cores (shared). A stop is "
        "seconds after the process printed its plan (training start); for a full disk, the largest file it "
        "could still write from that moment on.",
        "",
        "| trial | stopped by | setup | stops -> committed checkpoint after | resumes | stopped cleanly "
        "| resume completed | metrics = uninterrupted | weights = uninterrupted (bitwise) | summary = uninterrupted "
        "| run dir clean |",
        "|---:|---|---|---|---:|---|---|---|---|---|---|",
    ]
    yes = {True: "yes", False: "**no**"}
    for i, r in enumerate(results):
        if r.kind == "disk full":
            shown = "; ".join(f"{d / 1024:.1f} KiB -> {s}" for d, s in r.kills)
        else:
            shown = "; ".join(f"{d:.2f} s -> {s}" for d, s in r.kills) or "(finished before the kill)"
        clean = "**no**: " + "; ".join(r.stop_problems) if r.stop_problems else "yes"
        clean = "n/a" if r.kind == "SIGKILL" else clean  # no handler runs on SIGKILL: nothing to stop cleanly
        lines.append(
            f"| {i} | {r.kind} | {r.setup} | {shown} | {r.resumes} | {clean} | {yes[r.resume_ok]} | "
            f"{yes[r.match['metrics']]} | {yes[r.match['weights']]} | {yes[r.match['summary']]} | "
            f"{yes[r.match['clean']]} |"
        )
    passed = sum(r.passed for r in results)
    lines += [
        "",
        f"{passed}/{len(results)} trials ended exactly as the uninterrupted run; every committed checkpoint loaded "
        f"after each of the {kills} kills, and every SIGTERM and full disk stopped the run cleanly"
        + ("." if all(not r.stop_problems for r in results) else " **except where marked**."),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="SIGKILL trials")
    parser.add_argument("--term-trials", type=int, default=3, help="SIGTERM trials")
    parser.add_argument("--disk-trials", type=int, default=3, help="disk-full trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="one SIGKILL trial per setup, one SIGTERM, one disk full; README untouched"
    )
    args = parser.parse_args()
    trials = len(SETUPS) if args.quick else args.trials
    term_trials, disk_trials = (1, 1) if args.quick else (args.term_trials, args.disk_trials)
    from bench_common import write_table  # here: tests import this file as a module, without benchmarks/ on the path

    def save(results: list[Trial]) -> None:  # after every trial, so a long run keeps what it measured
        write_table("kill_trials", table(results, args.epochs), quick=args.quick)

    with tempfile.TemporaryDirectory(prefix="kill-trials-") as tmp:
        results = run_trials(
            trials, args.seed, args.epochs, Path(tmp), on_trial=save, term_trials=term_trials, disk_trials=disk_trials
        )
    sys.exit(0 if all(r.passed for r in results) else 1)


if __name__ == "__main__":
    main()
