"""`--executor ray`: each run a Ray task, on a local Ray instance or the cluster at --ray-address.

A compare grid is hundreds of independent runs: Ray schedules them onto the nodes by the resources each
task asks for (--run-cpus, --run-gpus; fractional GPUs share one), the way it schedules any task. A task
runs the same `tunelab train` child the other executors run (`comparison.executor.train_on_worker`), in the
folder the compare started in, so the run folders land in the same layout under --out. That is why --out,
the data and that folder must be on storage every node mounts at the same path on a multi-node cluster;
`storage.shared_folder` checks it on every node before anything trains. Every node needs this tunelab
installed (a local instance started here runs this process's tunelab).

How many tasks are in flight at once (`slots`): as many as fit on the nodes alive at the start; a queued
task would not have started, and progress announces a run when it is submitted. Tasks are not retried by
Ray (a retry would start over a run folder mid-way); a failed run is reported and the rest go on.

Connecting never hangs: --ray-address is probed with a TCP connect first (REACH_SECONDS), and `ray.init`
then runs in a helper thread given INIT_SECONDS (Ray's own retries last minutes). A local instance is started
from this thread instead: Ray's processes die with the thread that started them (their parent-death signal),
so a helper thread that ends would take them along. Either way SIGTERM keeps its handler (Ray would install
one that exits at once), so it keeps stopping the runs cleanly.

Ctrl-C / SIGTERM: every task in flight is cancelled the gentle way (Ray raises KeyboardInterrupt in it, and
the task hands its child one SIGINT, so each run keeps its last epoch), and waited for; a second Ctrl-C
cancels them by force. A Ray instance started here is shut down at the end; an existing connection (a
notebook's, a test's) is left as it was.

May import: comparison.executor, comparison.executors (base, storage), settings, errors; `ray` when used.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.comparison.executor import Outcome, child_environment, train_on_worker
from tunelab.comparison.executors.base import Finished, Job, Starting
from tunelab.comparison.executors.storage import check_on_node, shared_folder
from tunelab.errors import TunelabError, brief
from tunelab.settings import CompareConfig
from tunelab.settings.fields import to_argv

INSTALL = "pip install 'tunelab[ray]'"
REACH_SECONDS = 10.0
"""How long the TCP probe of --ray-address may take: an address nothing answers at fails after this."""
INIT_SECONDS = 120.0
"""How long `ray.init` may take: starting a local instance takes seconds (longer on a loaded machine)."""
PROBE_SECONDS = 120.0
"""How long the storage probes on the nodes may take (a node may first have to start a worker)."""
POLL_SECONDS = 1.0
"""How often the wait for finished tasks wakes up (so Ctrl-C and SIGTERM are seen at once)."""
LOCAL_OBJECT_STORE = 128 * 2**20
"""Object store of a local instance: tasks return an Outcome of a few bytes, Ray's default is 30% of RAM."""


def import_ray():
    """The `ray` module, or a TunelabError that says how to install it."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # read at import: lines differing only in numbers are distinct runs
    try:
        import ray
    except ImportError:
        raise TunelabError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Each run a Ray task with `cpus` CPUs and `gpus` GPUs; at most `slots` in flight."""

    ray: Any
    """The ray module, connected."""
    slots: int
    cpus: int
    gpus: float
    cwd: str
    """The folder the compare runs in: every task runs its child there."""

    def run(self, jobs: Sequence[Job], starting: Starting, finished: Finished) -> None:
        ray = self.ray
        task = ray.remote(train_on_worker).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0, name="tunelab-train"
        )
        waiting, flying = list(jobs), {}
        try:
            while waiting or flying:
                while waiting and len(flying) < self.slots:
                    job = waiting.pop(0)
                    flags = to_argv(starting(job))
                    flying[task.remote(flags, job.tag, self.cpus, self.cwd)] = (job, time.monotonic())
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    job, started = flying.pop(ref)
                    finished(job, self._outcome(ref, started))
        except BaseException:
            self._cancel(list(flying))
            raise

    def _outcome(self, ref, started: float) -> Outcome:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as e:  # the worker died (out of memory, a lost node), not the run
            lines = [line for line in str(e).splitlines() if line.strip()]
            reason = f"the Ray task failed: {brief(lines[-1] if lines else str(e), 300)}"
            return Outcome(1, time.monotonic() - started, reason)

    def _cancel(self, refs: list) -> None:
        """Cancel the tasks gently and wait for them (each run saves its epoch); by force on a second Ctrl-C."""
        ray = self.ray
        for ref in refs:
            ray.cancel(ref)
        try:
            while refs:
                _, refs = ray.wait(refs, num_returns=len(refs), timeout=POLL_SECONDS)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)


@contextlib.contextmanager
def open_ray(config: CompareConfig) -> Iterator[RayExecutor]:
    """Connect (or start a local instance), size the slots, check --out on every node; disconnect at the end."""
    ray = import_ray()
    cpus, gpus = config.run_cpus or 1, config.run_gpus
    connected_here = not ray.is_initialized()
    if connected_here:
        connect(ray, config.ray_address)
    try:
        nodes = alive_nodes(ray)
        slots = sum(fits(node, cpus, gpus) for node in nodes)
        if slots == 0:
            raise TunelabError(no_room(nodes, cpus, gpus))
        cwd = str(Path.cwd())
        with shared_folder(Path(config.out)) as marker:
            check_nodes(ray, [n for n in nodes if fits(n, cpus, gpus)], str(Path(config.out).resolve()), marker, cwd)
        yield RayExecutor(ray, slots, cpus, gpus, cwd)
    finally:
        if connected_here:
            ray.shutdown()


def connect(ray, address: str | None, seconds: float = INIT_SECONDS) -> None:
    """`ray.init` for --ray-address (None: a local instance on this machine), failing within bounded time."""
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    kwargs: dict = {"address": address, "logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        pythonpath = child_environment()["PYTHONPATH"]  # workers run this tunelab, as the serial children do
        kwargs |= {
            "include_dashboard": False,
            "object_store_memory": LOCAL_OBJECT_STORE,
            "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}},
        }
        with _own_sigterm_handler():
            try:
                ray.init(**kwargs)
            except Exception as e:
                raise TunelabError(f"cannot start {where}: {brief(' '.join(str(e).split()), 300)}") from None
        return
    if address != "auto":
        check_reachable(address)
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as e:  # handed to the waiting thread, which raises it as a TunelabError
            failure.append(e)

    quiet = _Quiet()
    logging.getLogger("ray._private.worker").addFilter(quiet)
    try:
        thread = threading.Thread(target=init, name="tunelab-ray-init", daemon=True)
        thread.start()
        thread.join(seconds)
    finally:
        logging.getLogger("ray._private.worker").removeFilter(quiet)
    if thread.is_alive():
        raise TunelabError(
            f"{where} did not answer within {seconds:.0f} s: check it is a Ray head (ray status) running Ray "
            f"{ray.__version__}, as here"
        )
    if failure:
        raise TunelabError(f"cannot reach {where}: {brief(' '.join(str(failure[0]).split()), 300)}")


@contextlib.contextmanager
def _own_sigterm_handler() -> Iterator[None]:
    """Keep this process's SIGTERM handler across the block: `ray.init` replaces it with one that exits at once,
    skipping the clean stop of the runs (the CLI's handler turns SIGTERM into an interruption)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_reachable(address: str, seconds: float = REACH_SECONDS) -> None:
    """Raise TunelabError unless something accepts a TCP connection at --ray-address within `seconds`."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=seconds):
            pass
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise TunelabError(
            f"cannot reach the Ray cluster at --ray-address {address} ({why} within {seconds:g} s): start it "
            "(ray start --head) or correct the address"
        ) from None


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of 'host:port', 'ray://host:port' or '[ipv6]:port'; TunelabError for anything else."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise TunelabError(
            f"--ray-address {brief(address)}: expected host:port (the head's GCS port, e.g. 10.0.0.5:6379), "
            "ray://host:port or auto"
        )
    return host, int(port)


def alive_nodes(ray) -> list[dict]:
    return [node for node in ray.nodes() if node.get("Alive")]


def fits(node: dict, cpus: int, gpus: float) -> int:
    """How many runs of `cpus` CPUs and `gpus` GPUs fit on `node` at once."""
    resources = node.get("Resources", {})
    count = math.floor(resources.get("CPU", 0) / cpus + 1e-9)
    if gpus:
        count = min(count, math.floor(resources.get("GPU", 0) / gpus + 1e-9))
    return count


def no_room(nodes: list[dict], cpus: int, gpus: float) -> str:
    most_cpus = max((n.get("Resources", {}).get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("Resources", {}).get("GPU", 0) for n in nodes), default=0)
    asked = f"{cpus} CPU(s)" + (f" and {gpus:g} GPU(s)" if gpus else "")
    return (
        f"no node of the Ray cluster has {asked} for one run (the largest has {most_cpus:g} CPUs, "
        f"{most_gpus:g} GPUs): lower --run-cpus / --run-gpus or add a node that has them"
    )


def check_nodes(ray, nodes: list[dict], out: str, marker: str, cwd: str) -> None:
    """Run `storage.check_on_node` on each node (pinned there); TunelabError with the first problem found."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(check_on_node)
    pinned = [NodeAffinitySchedulingStrategy(node["NodeID"], soft=False) for node in nodes]
    refs = [probe.options(num_cpus=0, scheduling_strategy=where).remote(out, marker, cwd) for where in pinned]
    try:
        problems = [p for p in ray.get(refs, timeout=PROBE_SECONDS) if p]
    except ray.exceptions.GetTimeoutError:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise TunelabError(
            f"the Ray nodes did not answer a {PROBE_SECONDS:.0f} s check that they can write --out: is the cluster "
            "busy or are workers failing to start (ray status)?"
        ) from None
    if problems:
        raise TunelabError(problems[0])


class _Quiet(logging.Filter):
    """Drops Ray's warning that it set no SIGTERM handler from a thread: that is what this module wants."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()
