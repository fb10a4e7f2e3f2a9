"""Compare strategies side by side on equal budgets: strategies x seeds (x folds) (x data fractions) -> report.

Every comparison run is an ordinary run directory under `<out>/runs/`, trained by its own `tunelab train`
process (`comparison.executor`), so its time, peak memory and a crash are its own. Which machine starts that
process, and how many at once, is the executor's business (`comparison.executors`: serial, local, ray); this
module hands it the runs still to do and hears back from it as each starts and ends. A compare that is
interrupted and started again with the same `--out` skips the runs that finished with the same settings and
resumes the one that was cut off; a run saved with other settings stops it before anything trains.

Equal conditions: every run of a compare gets the same augmentation policy, chosen here (off unless
--augment), so no strategy trains on other inputs than the rest because it happens to cache features.

May import: comparison (executor, executors, report), runs, strategies, settings, fileio, errors. The training
happens in the children, so this process loads no model, except to resolve the settings of runs already in
--out (`runs.identity.check_reuse`).
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.comparison.executor import Outcome
from tunelab.comparison.executors.base import Job
from tunelab.errors import TunelabError, brief
from tunelab.runs.rundir import RunDir
from tunelab.settings import CompareConfig, TrainConfig, shared_settings
from tunelab.strategies import REGISTRY, parse_strategy

SIMPLE_SPEC = re.compile(r"[A-Za-z0-9]+(?:[.:][A-Za-z0-9]+)*")
"""Specs whose folder name is the spec with ':' as '-' (retrain:4 -> retrain-4): they hold no '-', so it reads back."""

ALL = ("all",)
"""--strategies for every registered strategy (the default)."""

REPORT_FILES = ("results.csv", "results.md", "report.html")
"""The files of a report in --out: if one is there, an earlier comparison wrote a report."""


def slug(spec: str) -> str:
    """A folder name for a strategy spec, different for every spec and never a path outside the comparison.

    Simple specs read as themselves ('retrain:4' -> 'retrain-4'). Any other spec keeps its letters, digits
    and dots, and gets '_' and a hash of the whole spec ('lora:alpha=0.1' -> 'lora-alpha-0.1_<hash>'), since
    replacing characters alone maps 'alpha=1e-1' and 'alpha=1e+1' to one folder. A simple name has no '_',
    so the two kinds never meet.
    """
    if SIMPLE_SPEC.fullmatch(spec):
        return spec.replace(":", "-")
    readable = re.sub(r"[^A-Za-z0-9.]+", "-", spec).strip("-.")[:48].rstrip("-.") or "run"
    return f"{readable}_{hashlib.sha256(spec.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def strategy_specs(config: CompareConfig) -> tuple[str, ...]:
    """The canonical specs to compare (`Strategy.spec()`): --strategies, or every registered strategy for `all`.

    Canonical, so 'lora:8' and 'lora' (8 is its default) are one strategy, listed twice, and every
    folder, config.yaml and report row names a strategy the same way. (`all` rather than an unset value:
    on the command line `none` reads as unset, and `--strategies none` must mean the strategy `none`.)
    """
    every = config.strategies is None or tuple(config.strategies) == ALL  # None: a library caller's "unset"
    given = tuple(REGISTRY) if every else tuple(s for s in config.strategies if s.strip())
    if not given:
        raise TunelabError(
            "no strategy given in --strategies: name at least one (e.g. none,full), or leave it out to compare all"
        )
    specs: dict[str, str] = {}
    for spec in given:
        strategy = parse_strategy(spec)  # a bad spec fails here, before hours of training
        strategy.phase_starts(config.epochs)  # and so does a phase that begins after --epochs ends (lpft, gradual)
        canonical = strategy.spec()
        if canonical in specs:
            same = f"'{spec}'" if spec == specs[canonical] else f"'{specs[canonical]}' and '{spec}' (both {canonical})"
            raise TunelabError(f"--strategies lists one strategy twice: {same}; listed twice, it would train twice")
        specs[canonical] = spec
    return tuple(specs)


def learning_rates(config: CompareConfig, specs: tuple[str, ...]) -> dict[str, float]:
    """Parse the spec=lr overrides (keys as canonical specs); every spec must be compared, every lr positive."""
    rates = {}
    for item in config.lrs:
        spec, sep, value = item.rpartition("=")
        canonical = _canonical_or_none(spec) if sep else None
        if canonical not in specs:
            raise TunelabError(
                f"--lrs item '{brief(item)}': expected <strategy>=<lr> with a strategy from --strategies "
                f"({', '.join(specs)})"
            )
        try:
            rate = float(value)
        except ValueError:
            raise TunelabError(f"--lrs item '{brief(item)}': '{brief(value)}' is not a number") from None
        if not (math.isfinite(rate) and rate > 0):
            raise TunelabError(f"--lrs item '{brief(item)}': a learning rate must be a positive finite number")
        rates[canonical] = rate
    return rates


def _canonical_or_none(spec: str) -> str | None:
    try:
        return parse_strategy(spec).spec()
    except TunelabError:
        return None


def planned_runs(config: CompareConfig) -> list[TrainConfig]:
    """One TrainConfig per (fraction, seed, fold, strategy): the whole comparison, in the order it runs.

    Every setting group CompareConfig shares with TrainConfig reaches each run unchanged, except that
    augmentation left unset is off for every run (see the module docstring), and two folders left unset are
    the compare's: the runs share their cached features in <out>/feature-cache (`runs.feature_store`) and,
    with --log-with, track into <out>/tracking (`runs.tracking`). Only the per-run fields (strategy, seed,
    fold, train fraction, run folder, resume) and a --lrs override differ.
    """
    specs = strategy_specs(config)
    rates = learning_rates(config, specs)
    shared = shared_settings(config, TrainConfig) | {"augment": bool(config.augment)}
    shared["feature_store"] = config.feature_store or str(Path(config.out) / "feature-cache")
    if config.log_with and config.tracking_dir is None:
        shared["tracking_dir"] = str(Path(config.out) / "tracking")
    folds = range(config.folds) if config.folds else [None]
    runs = []
    # Seed-major order: an interrupted comparison already holds every strategy for its first seeds.
    for fraction in config.data_fractions:
        for seed in range(config.seeds):
            for fold in folds:
                for spec in specs:
                    name = f"s{seed}" + ("" if fold is None else f"-fold{fold}")
                    out = Path(config.out) / "runs" / f"fraction-{fraction:g}" / slug(spec) / name
                    per_run = {
                        "strategy": spec,
                        "lr": rates.get(spec, config.lr),
                        "seed": seed,
                        "fold": 0 if fold is None else fold,
                        "train_fraction": fraction,
                        "out": str(out),
                        "resume": (out / "checkpoint" / "latest").is_file(),
                    }
                    runs.append(TrainConfig(**{**shared, **per_run}))
    return runs


def augmentation_line(config: CompareConfig) -> str:
    """The augmentation policy of a compare, said once at its start."""
    if config.augment:
        return "augmentation: on for every strategy (so no image strategy caches features)"
    return (
        "augmentation: off for every strategy (--augment turns it on for all; then no image strategy caches features)"
    )


def check_report_scope(runs: list[TrainConfig], config: CompareConfig) -> None:
    """Refuse to shrink a report: a report in --out next to finished runs outside this grid stays as it is.

    The report this compare writes covers the runs of its own grid; one written by an earlier compare
    into the same --out covered that compare's runs. Finished runs under <out>/runs that this grid does
    not hold are runs the old report shows and the new one would silently drop.
    """
    out = Path(config.out)
    if config.replace_report or not any((out / name).exists() for name in REPORT_FILES):
        return
    planned = {Path(run.out).resolve() for run in runs}
    outside = sorted(
        summary.parent
        for summary in (out / "runs").glob("*/*/*/summary.json")
        if summary.parent.resolve() not in planned
    )
    if outside:
        example = outside[0].relative_to(out).as_posix()
        raise TunelabError(
            f"{out} holds a report over {len(outside)} finished run(s) outside this comparison (e.g. {example}); "
            "its report would be replaced by one without them: give another --out, or --replace-report to replace it"
        )


# ---------------------------------------------------------------- progress


def clock(seconds: float) -> str:
    """MM:SS, or H:MM:SS from an hour on."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def run_label(i: int, runs: list[TrainConfig], config: CompareConfig) -> str:
    """'[i/N] strategy, seed s (fold f, fraction x, resuming)': the parts that tell this run from the others."""
    run = runs[i - 1]
    parts = [f"fold {run.fold}"] if config.folds else []
    parts += [f"fraction {run.train_fraction:g}"] if len(config.data_fractions) > 1 else []
    parts += ["resuming"] if run.resume else []
    return f"[{i}/{len(runs)}] {run.strategy}, seed {run.seed}" + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class Timer:
    """Elapsed time of a compare and the time its remaining runs will take, from the runs finished so far.

    A run still to do is estimated by the mean wall time of the finished runs of its strategy (strategies
    differ by orders of magnitude: a cached linear probe against a full fine-tune), else of all of them; a run
    under way by that estimate less the time it has run. With `slots` runs at once the work left is shared
    among them (a parallel executor's estimate is as rough as the runs are uneven).
    """

    started: float = field(default_factory=time.monotonic)
    """When the compare began (time.monotonic)."""
    seconds: dict[str, list[float]] = field(default_factory=dict)
    """Wall times of the runs finished so far, by strategy."""
    running: dict[str, float] = field(default_factory=dict)
    """When each run under way started, by run folder."""

    def start(self, run: TrainConfig) -> None:
        self.running[run.out] = time.monotonic()

    def finished(self, run: TrainConfig, seconds: float) -> None:
        self.running.pop(run.out, None)
        self.seconds.setdefault(run.strategy, []).append(seconds)

    def status(self, pending: list[TrainConfig], slots: int = 1) -> str:
        """'elapsed MM:SS, about MM:SS left' for the runs in `pending` (not finished: this one included)."""
        now = time.monotonic()
        elapsed = f"elapsed {clock(now - self.started)}"
        every = [s for times in self.seconds.values() for s in times]
        if not every:
            return f"{elapsed}, estimating the time left"
        overall = sum(every) / len(every)
        left = 0.0
        for run in pending:
            estimate = _mean(self.seconds.get(run.strategy)) or overall
            left += max(0.0, estimate - (now - self.running.get(run.out, now)))
        return f"{elapsed}, about {clock(left / max(1, min(slots, len(pending))))} left"


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------- the comparison


def compare(config: CompareConfig) -> Path:
    """Run (or finish) every planned run, each in its own process, then write the report; returns report.html
    (the CLI then prints the results table on stdout and this path on stderr).

    Before anything trains: the executor settings must make sense (`check_executor_settings`), the report in
    --out may not shrink (`check_report_scope`), --out must be writable (`check_writable`; under Ray on every
    node) and a run already in a planned folder is reused only with the same settings
    (`runs.identity.check_reuse`; --rerun retrains it). A run that fails is reported as failed and the others
    go on; if every run failed, this raises TunelabError. Ctrl-C stops the running children (each keeps its last
    committed epoch) and re-raises.
    """
    from tunelab.comparison.executors import check_executor_settings
    from tunelab.comparison.executors.storage import check_writable
    from tunelab.comparison.report import report_from_runs
    from tunelab.runs.identity import check_reuse
    from tunelab.runs.tracking import check_trackers

    check_trackers(config.log_with)  # a tracker's package missing: said here, not by every run that fails on it
    check_executor_settings(config)
    runs = planned_runs(config)
    check_report_scope(runs, config)  # first: check_reuse may load models, and nothing may change if this fails
    check_writable(Path(config.out))
    rerun = {run.out for run in check_reuse(runs, config.rerun)}
    print(augmentation_line(config), file=sys.stderr)
    jobs = []
    for i, run in enumerate(runs, 1):
        label = run_label(i, runs, config)
        if run.out not in rerun and RunDir(Path(run.out)).complete:
            print(f"{label}: done before, skipped", file=sys.stderr)
        else:
            jobs.append(Job(i, len(runs), label, run))
    failed = train_jobs(jobs, config, rerun) if jobs else []  # all done before: no executor to open (Ray)
    done = [Path(run.out) for run in runs if RunDir(Path(run.out)).complete]
    if not done:
        first = failed[0]
        raise TunelabError(f"every run failed; the first, {first.strategy} seed {first.seed}: {first.reason}")
    return report_from_runs(done, Path(config.out), failed=failed, margin=config.margin)


def train_jobs(jobs: list[Job], config: CompareConfig, rerun: set[str]) -> list:
    """Train `jobs` on the executor --executor names, announcing each as it starts and ends; returns the failed
    runs (`FailedRun`). Runs in `rerun` are discarded right before they start, so an interrupted --rerun loses
    only the runs it had started."""
    from tunelab.comparison.executors import open_executor
    from tunelab.runs.identity import discard_run

    timer, failed, pending = Timer(), [], {job.index: job.config for job in jobs}
    with open_executor(config) as executor:

        def starting(job: Job) -> TrainConfig:
            run = discard_run(job.config) if job.config.out in rerun else job.config
            timer.start(run)
            print(f"{job.label}: {timer.status(list(pending.values()), executor.slots)}", file=sys.stderr)
            return run

        def finished(job: Job, outcome: Outcome) -> None:
            del pending[job.index]
            if outcome.ok and RunDir(Path(job.config.out)).complete:
                timer.finished(job.config, outcome.seconds)
                print(f"{job.label}: finished in {clock(outcome.seconds)}", file=sys.stderr)
                return
            reason = outcome.reason or "the run ended without writing summary.json"
            timer.running.pop(job.config.out, None)
            failed.append(failed_run(job.config, config, reason))
            print(f"{job.label}: failed: {reason}; going on with the other runs", file=sys.stderr)

        try:
            executor.run(jobs, starting, finished)
        finally:  # once no run is under way: a run that failed at its start leaves no folders for another to need
            for run in failed:
                remove_empty_folders(run.path, Path(config.out))
    return failed


def remove_empty_folders(path: Path, top: Path) -> None:
    """Remove `path` and the folders above it up to (not including) `top` while they are empty.

    A run that fails at its start removes its own folder (`runs.rundir.clean_up_after_failure`), but not
    the strategy and fraction folders above it that were made for it.
    """
    for folder in (path, *path.parents):
        if folder == top or top not in folder.parents:
            return
        try:
            folder.rmdir()  # only ever removes an empty folder
        except FileNotFoundError:
            continue
        except OSError:
            return


def failed_run(run: TrainConfig, config: CompareConfig, reason: str):
    """The report's record of a run that did not finish."""
    from tunelab.comparison.results import FailedRun

    fold = run.fold if config.folds else None
    return FailedRun(Path(run.out), run.strategy, run.seed, fold, run.train_fraction, reason)
