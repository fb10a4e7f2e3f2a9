"""Compare executors: serial, --executor local --workers N, and --executor ray, on tiny-cnn and tiny data.

The unit tests at the top start no run. The others train a 2 x 1 grid (none and full, one seed) in child
processes and are marked slow; the Ray ones also start (or join) a local Ray instance and are skipped, with
the reason, where Ray is not installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest

from train_fixtures import write_image_folder
from tunelab.cli import main
from tunelab.comparison.executor import LineRelay, child_environment, start_child
from tunelab.comparison.executors import EXECUTORS, check_executor_settings
from tunelab.comparison.executors.base import machine_cores
from tunelab.comparison.executors.local import LocalExecutor
from tunelab.comparison.executors.ray_cluster import check_reachable, parse_address
from tunelab.comparison.executors.storage import check_on_node, check_writable
from tunelab.comparison.grid import Timer, compare, planned_runs
from tunelab.errors import TunelabError
from tunelab.settings import CompareConfig
from tunelab.settings.fields import Limits

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed here: pip install 'tunelab[ray]' (CI installs it, so these run there)",
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


# ---------------------------------------------------------------- no run started


def test_the_executor_names_are_the_choices_of_the_setting():
    limits = next(f.metadata["limits"] for f in fields(CompareConfig) if f.name == "executor")
    assert isinstance(limits, Limits) and limits.choices == tuple(EXECUTORS) == ("serial", "local", "ray")


def test_local_workers_share_the_cores_unless_told_otherwise():
    base = CompareConfig(model="tiny-cnn", executor="local")
    cores = machine_cores()
    assert LocalExecutor.from_settings(replace(base, workers=2)) == LocalExecutor(2, max(1, cores // 2))
    assert LocalExecutor.from_settings(replace(base, workers=2, run_cpus=3)) == LocalExecutor(2, 3)
    assert LocalExecutor.from_settings(base) == LocalExecutor(cores, 1)  # unset: one run per core


def test_a_child_is_told_its_threads_and_otherwise_inherits_them():
    told = child_environment(3)
    assert {told[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")} == {"3"}
    assert child_environment().get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")


def test_settings_that_another_executor_would_ignore_are_refused():
    base = CompareConfig(model="tiny-cnn")
    with pytest.raises(TunelabError, match=r"--workers 2 needs --executor local; --executor serial runs one at"):
        check_executor_settings(replace(base, workers=2))
    with pytest.raises(TunelabError, match=r"--workers 2 needs --executor local; --executor ray runs as many"):
        check_executor_settings(replace(base, executor="ray", workers=2))
    with pytest.raises(TunelabError, match=r"--ray-address auto applies to --executor ray only"):
        check_executor_settings(replace(base, executor="local", ray_address="auto"))
    with pytest.raises(TunelabError, match=r"--run-gpus 0\.5 applies to --executor ray only"):
        check_executor_settings(replace(base, run_gpus=0.5))
    with pytest.raises(TunelabError, match=r"--run-gpus 1\.5: a run takes a fraction of one GPU"):
        check_executor_settings(replace(base, executor="ray", run_gpus=1.5))
    check_executor_settings(replace(base, executor="ray", run_gpus=0.25, run_cpus=2, ray_address="auto"))


def test_parallel_output_arrives_as_whole_tagged_lines_without_progress_bar_redraws():
    read, write = os.pipe()
    os.write(write, "plan\nepoch 1/2:  50%|█\repoch 1/2: 100%|██\r          \repoch 1/2: loss 0.5\nlast".encode())
    os.close(write)
    stream = io.StringIO()
    relay = LineRelay(read, stream, "[2/4]", threading.Lock())
    relay.until_closed()
    os.close(read)
    assert stream.getvalue() == "[2/4] plan\n[2/4] epoch 1/2: loss 0.5\n[2/4] last\n"
    assert relay.tail.endswith("epoch 1/2: loss 0.5\nlast")  # as written: failure_reason reads its last line


def test_a_child_started_where_sigint_is_blocked_can_still_be_interrupted():
    """A Ray worker blocks SIGINT and a child inherits that: it would never see the SIGINT that stops it."""
    seen = {}

    def start_in_a_thread_that_blocks_sigint():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        probe = "import signal; print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))"
        child = start_child([sys.executable, "-c", probe])
        seen["blocked"] = child.stdout.read().decode().strip()
        child.wait()
        child.stdout.close()

    thread = threading.Thread(target=start_in_a_thread_that_blocks_sigint)
    thread.start()
    thread.join()
    assert seen == {"blocked": "False"}


def test_time_left_shares_the_work_among_the_runs_at_once(tmp_path):
    config = CompareConfig(model="tiny-cnn", data="d", out=str(tmp_path), strategies=("none", "full"), seeds=2)
    runs = planned_runs(config)
    timer = Timer()
    timer.finished(runs[0], 10.0)  # none
    timer.finished(runs[1], 70.0)  # full
    assert timer.status(runs[2:], slots=1).endswith("about 01:20 left")
    assert timer.status(runs[2:], slots=2).endswith("about 00:40 left")
    timer.running[runs[3].out] = time.monotonic() - 30  # full, seed 1 has run 30 s of its 70
    assert timer.status(runs[2:], slots=2).endswith("about 00:25 left")


def test_the_ray_address_is_checked_before_ray_is_asked():
    assert parse_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert parse_address("ray://head:10001") == ("head", 10001)
    assert parse_address("[::1]:6379") == ("::1", 6379)
    for bad in ("head", "http://head:8265/", "head:port", "head:0", ":6379"):
        with pytest.raises(TunelabError, match=r"expected host:port"):
            parse_address(bad)
    with socket.socket() as s:  # a port nothing listens on: refused at once, not after Ray's minutes of retries
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TunelabError, match=rf"cannot reach the Ray cluster at --ray-address 127\.0\.0\.1:{port} \("):
        check_reachable(f"127.0.0.1:{port}", seconds=5)
    assert time.monotonic() - started < 5


def test_the_storage_checks_leave_nothing_and_name_a_node_without_out(tmp_path):
    out = tmp_path / "a" / "b" / "cmp"
    check_writable(out)
    assert list(tmp_path.iterdir()) == []  # the folders it created for the check are gone again
    (tmp_path / "file").write_text("")
    with pytest.raises(TunelabError, match=r"cannot create --out .*file/cmp: Not a directory"):
        check_writable(tmp_path / "file" / "cmp")

    (tmp_path / "marker").write_text("")
    assert check_on_node(str(tmp_path), "marker", str(tmp_path)) == ""
    assert "does not see --out" in check_on_node(str(tmp_path), "another-marker", str(tmp_path))
    assert "does not have /nowhere" in check_on_node(str(tmp_path), "marker", "/nowhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "marker"]


# ---------------------------------------------------------------- grids of real runs


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("data") / "img", per_class=6)


def grid(data: Path, out: Path, **changes) -> CompareConfig:
    """The 2 x 1 grid: none and full, one seed, 2 epochs; one thread per run under every executor."""
    settings = {"strategies": ("none", "full"), "epochs": 2, "batch_size": 8, "run_cpus": 1} | changes
    return CompareConfig(model="tiny-cnn", data=str(data), out=str(out), **settings)


def numbers(out: Path) -> dict[str, tuple]:
    """Every run's metrics (wall-clock seconds left out) and scores, by run folder."""
    found = {}
    for summary in sorted((out / "runs").glob("*/*/*/summary.json")):
        metrics = [json.loads(line) for line in (summary.parent / "metrics.jsonl").read_text().splitlines()]
        scores = json.loads(summary.read_text())
        found[summary.parent.relative_to(out).as_posix()] = (
            [{k: v for k, v in m.items() if k != "seconds"} for m in metrics],
            {k: v for k, v in scores.items() if "score" in k or "accuracy" in k},
        )
    return found


@pytest.fixture(scope="module")
def serial_numbers(small_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "cmp"
    compare(grid(small_images, out))
    found = numbers(out)
    assert len(found) == 2
    return found


@pytest.mark.slow
def test_local_workers_give_the_serial_numbers_with_tagged_output(small_images, serial_numbers, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "tiny-cnn", "--data", str(small_images), "--strategies", "none,full"]
    argv += ["--epochs", "2", "--batch-size", "8", "--run-cpus", "1", "--executor", "local", "--workers", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert numbers(out) == serial_numbers
    assert {"[1/2] none, seed 0: elapsed 00:00, estimating the time left"} <= set(err)
    assert any(line.startswith("[2/2] full, seed 0: elapsed ") for line in err)
    assert sum(line.startswith("[1/2] best val accuracy") for line in err) == 1  # the child's lines, tagged
    assert sum(line.startswith("[2/2] best val accuracy") for line in err) == 1
    assert any(line.startswith("[2/2] full, seed 0: finished in ") for line in err)
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_a_failed_run_among_local_workers_is_reported_and_the_others_finish(small_images, tmp_path, capsys):
    out = tmp_path / "cmp"
    compare(grid(small_images, out, strategies=("retrain:99", "none"), executor="local", workers=2, epochs=1))
    err = capsys.readouterr().err
    assert "[1/2] retrain:99, seed 0: failed: " in err and "K must be between" in err
    assert (out / "runs" / "fraction-1" / "none" / "s0" / "summary.json").is_file()
    assert not (out / "runs" / "fraction-1" / "retrain-99").exists()
    assert "retrain:99" in (out / "results.md").read_text()


@pytest.mark.slow
def test_sigterm_stops_every_local_worker_and_the_same_command_resumes_them(small_images, tmp_path, capsys):
    """Both runs under way get SIGTERM, save their last epoch and exit; compare exits 143; then it resumes both.
    Two strategies that train the whole network (`none` caches its features and could be done before `full`
    has saved an epoch)."""
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "tiny-cnn", "--data", str(small_images), "--strategies", "full,scratch"]
    argv += ["--epochs", "20", "--batch-size", "2", "--patience", "100", "--out", str(out)]
    argv += ["--executor", "local", "--workers", "2", "--run-cpus", "1"]
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", *argv], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    runs = [out / "runs" / "fraction-1" / name / "s0" for name in ("full", "scratch")]
    deadline = time.monotonic() + 240
    while not all((run / "checkpoint" / "latest").is_file() for run in runs):
        assert proc.poll() is None and time.monotonic() < deadline, "compare ended before both runs checkpointed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.splitlines()[-1].startswith("tunelab: error: interrupted; run the same command again")
    done_before = [len((run / "metrics.jsonl").read_text().splitlines()) for run in runs]
    assert all(1 <= n < 20 for n in done_before) and not any((run / "summary.json").exists() for run in runs)

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[1/2] full, seed 0 (resuming)" in err and "[2/2] scratch, seed 0 (resuming)" in err
    assert all(json.loads((run / "summary.json").read_text())["epochs"] == 20 for run in runs)


# ---------------------------------------------------------------- on Ray


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for this module's Ray tests (starting one takes seconds): 2 CPUs, no dashboard."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        runtime_env={"env_vars": {"PYTHONPATH": SRC}},
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()


@needs_ray
@pytest.mark.slow
def test_a_grid_on_ray_gives_the_serial_numbers(ray_instance, small_images, serial_numbers, tmp_path, capsys):
    out = tmp_path / "cmp"
    report = compare(grid(small_images, out, executor="ray"))
    assert numbers(out) == serial_numbers
    err = capsys.readouterr().err
    assert "[1/2] none, seed 0: elapsed" in err and "[2/2] full, seed 0: finished in " in err
    assert report == out / "report.html" and report.is_file()
    assert not list(out.glob(".tunelab-probe-*"))  # the storage check cleaned up after itself
    assert ray_instance.is_initialized()  # a connection compare did not open stays open


@needs_ray
@pytest.mark.slow
def test_a_run_that_fits_on_no_ray_node_is_refused_before_anything_trains(ray_instance, small_images, tmp_path):
    expected = r"no node of the Ray cluster has 3 CPU\(s\) for one run \(the largest has 2 CPUs"
    with pytest.raises(TunelabError, match=expected):
        compare(grid(small_images, tmp_path / "cmp", executor="ray", run_cpus=3))
    assert not (tmp_path / "cmp").exists()


@needs_ray
@pytest.mark.slow
def test_ctrl_c_cancels_the_ray_tasks_and_each_run_keeps_its_last_epoch(small_images, tmp_path):
    """Ctrl-C in a compare that started its own local Ray instance: every task is cancelled the gentle way, its
    child saves its epoch, and compare ends with the interruption's line and exit code 2. Two strategies that train
    the whole network, as in the local test: `none` trains on cached features and could finish its 200 epochs before
    `full` has saved one."""
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "tiny-cnn", "--data", str(small_images), "--strategies", "full,scratch"]
    argv += ["--epochs", "200", "--batch-size", "2", "--patience", "1000", "--out", str(out), "--executor", "ray"]
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # see test_bad_inputs: SIGINT may be ignored
    )
    runs = [out / "runs" / "fraction-1" / name / "s0" for name in ("full", "scratch")]
    deadline = time.monotonic() + 300
    while not all((run / "checkpoint" / "latest").is_file() for run in runs):
        assert proc.poll() is None and time.monotonic() < deadline, "compare ended before both runs checkpointed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    assert err.splitlines()[-1].startswith("tunelab: error: interrupted; run the same command again")
    for run in runs:
        assert "add --resume to continue" in err  # each child was interrupted, not killed
        assert not (run / "summary.json").exists()
        assert 1 <= len((run / "metrics.jsonl").read_text().splitlines()) < 200
