"""`CompareConfig`: the settings of `tunelab compare`, every shared training group plus the grid to run.

Every setting a training run takes and that is not particular to one run (strategy, seed, fold, data
fraction, run folder) comes from the same groups as `TrainConfig`, so a comparison runs under exactly the
settings a user trains with. May import only `tunelab.settings.fields` and `tunelab.settings.groups`.

What compare decides for every run alike is said in COMPARE_NOTES, which the CLI adds to --help: a shared
setting keeps one declaration and one doc (`tunelab.settings.groups`), and compare's policy is a note on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.settings.fields import setting
from tunelab.settings.groups import RunSettings

COMPARE_NOTES = {
    "augment": "In compare, unset means off for every strategy: then every frozen prefix can be cached and all "
    "strategies see identical inputs; --augment turns it on for all (then no image strategy caches features).",
}
"""Notes added to the --help of shared settings whose value compare sets for every run alike."""


@dataclass(frozen=True, kw_only=True)
class CompareConfig(RunSettings):
    """Everything `tunelab compare` needs; every strategy trains under the same shared settings."""

    out: str = "runs/compare"
    """Output directory: the runs (under runs/), results.csv/.md, plots and report.html."""
    strategies: tuple[str, ...] = ("all",)
    """Strategy specs to compare, comma-separated, e.g. none,full,retrain:4,lora:8; all = every registered strategy."""
    seeds: int = setting(1, low=1)
    """Repetitions with seeds 0 .. seeds-1 (mean and std are reported)."""
    data_fractions: tuple[float, ...] = setting((1.0,), low=0, high=1)
    """Training-set fractions to compare at, e.g. 0.1,0.3,1.0 (stratified subsets, same validation set)."""
    lrs: tuple[str, ...] = ()
    """Per-strategy head learning rates as spec=lr, e.g. scratch=3e-3,full=5e-4; the others use lr."""
    rerun: bool = False
    """Retrain the runs in out whose saved settings differ from this command's (their run folders are removed
    first); without it such a run stops the comparison before anything trains."""
    replace_report: bool = False
    """Let this comparison's report replace one in out that covers runs outside this grid (those run folders stay)."""
    margin: float = setting(0.01, low=0)
    """Largest loss against the best (metric units) the report still calls as good: its paired 95% interval must rule
    out more; an interval that includes 0 but not the margin reads 'too few runs to tell'."""
    executor: str = setting("serial", choices=("serial", "local", "ray"))
    """Where the runs train: serial (one after another, here), local (--workers at once, here) or ray (each run a
    Ray task, on a local Ray instance or the cluster at --ray-address; pip install 'tunelab[ray]')."""
    workers: int | None = setting(None, low=1)
    """Runs at once with --executor local; unset: this machine's cores divided by --run-cpus."""
    ray_address: str | None = None
    """Ray cluster for --executor ray: host:port of its head, ray://host:port or auto; unset: start a local Ray
    instance on this machine. On several nodes, --out, the data and this folder must be on storage every node
    mounts at the same path."""
    run_cpus: int | None = setting(None, low=1)
    """CPU threads of each run (under Ray also the CPUs each task reserves); unset: serial leaves the thread count
    to torch (every core), local gives each run its share of the cores, ray 1. Give the same value to every
    executor for bit-identical numbers: float sums in another order change the last digits, and over epochs
    can change a few predictions."""
    run_gpus: float = setting(0.0, low=0)
    """GPUs each Ray task reserves (--executor ray); fractions share a GPU, e.g. 0.5 runs two per GPU."""
