"""The bad-input table, run directories: damaged run files, links planted in a run, full and read-only disks.

Rows use the contract of tests/test_bad_inputs.py (`Case`, `check_case`): one error line, exit 2, nothing
half-written and, for every row here, nothing outside the run folder written or deleted (the snapshot
covers the whole test folder, including the folders the planted links point to). The focused tests below
the table cover what a row cannot: the lock between two real processes, SIGTERM, file modes, and a real
full or read-only file system (in a user namespace, where the machine allows one).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import SafetensorError

import tunelab.runs.epoch as epoch_module
from test_bad_inputs import Case, check_case, finished_run, image_train, run_until_interrupted, unfinished_image_run
from train_fixtures import write_image_folder
from tunelab.cli import TERMINATED_EXIT, main
from tunelab.fileio import load_json
from tunelab.runs import checkpoint_io, feature_cache
from tunelab.runs.checkpoint_io import load_tensors, save_tensors

SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------- inputs


def eval_with(run: Path, data: Path) -> list[str]:
    return ["eval", "--run", str(run), "--data", str(data)]


def report_of(tmp: Path, run: Path) -> list[str]:
    return ["report", str(run), "--out", str(tmp / "report")]


def edit_json(path: Path, change) -> None:
    """Rewrite a JSON run file with `change(obj)`'s result."""
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def edit_metadata(path: Path, **changes: str) -> None:
    """Rewrite a safetensors file's metadata (values as stored: strings)."""
    tensors, meta = load_tensors(path)
    save_tensors(path, tensors, {**meta, **changes})


def cached_unfinished_run(tmp: Path) -> tuple[Path, list[str]]:
    """An image run with its frozen prefix cached on disk (retrain:2, no memory budget), interrupted in its
    second of three epochs; returns (run directory, the argv that resumes it)."""
    data = write_image_folder(tmp / "img")
    out = tmp / "run"
    argv = [*image_train(data, out, "--cache-memory-mb", "0", "--batch-size", "8")]
    argv[argv.index("none")] = "retrain:2"
    argv[argv.index("--epochs") + 1] = "3"
    run_until_interrupted(argv, stop_at_epoch=1)
    assert (out / "checkpoint" / "latest").read_text() == "epoch-0001"
    return out, [*argv, "--resume"]


def outside(tmp: Path) -> Path:
    """A folder outside the run holding a file a run would overwrite (a cache file's name) and one of the user's."""
    folder = tmp / "outside"
    folder.mkdir()
    (folder / "train-0.npy").write_bytes(b"not the run's: the user's file that happens to have this name")
    (folder / "precious.txt").write_text("the user's own file")
    return folder


# ---------------------------------------------------------------- damaged run files


def summary_not_an_object(tmp, mp):
    run, data = finished_run(tmp)
    (run / "summary.json").write_text("[1, 2]")
    return eval_with(run, data)


def summary_string_score(tmp, mp):
    run, _ = finished_run(tmp)
    edit_json(run / "summary.json", lambda s: {**s, "score": "0.93"})
    return report_of(tmp, run)


def summary_version_as_text(tmp, mp):
    run, data = finished_run(tmp)
    edit_json(run / "summary.json", lambda s: {**s, "format_version": "1"})
    return eval_with(run, data)


def summary_classes_not_strings(tmp, mp):
    run, _ = finished_run(tmp)
    edit_json(run / "summary.json", lambda s: {**s, "classes": [1, 2]})
    return report_of(tmp, run)


def summary_of_a_finished_run_damaged_on_resume(tmp, mp):
    run, data = finished_run(tmp)
    (run / "summary.json").write_text('"done"')
    return image_train(data, run, "--resume")


def metrics_line_damaged(tmp, mp):
    run, _ = finished_run(tmp)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "val_accuracy": \n')
    return report_of(tmp, run)


def state_not_an_object(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    (out / "checkpoint" / "epoch-0001" / "state.json").write_text("3")
    return resume


def state_epoch_as_text(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    edit_json(out / "checkpoint" / "epoch-0001" / "state.json", lambda s: {**s, "epoch": "1"})
    return resume


def state_without_scheduler(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    edit_json(
        out / "checkpoint" / "epoch-0001" / "state.json", lambda s: {k: v for k, v in s.items() if k != "scheduler"}
    )
    return resume


def optimizer_state_not_an_object(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    edit_metadata(out / "checkpoint" / "epoch-0001" / "optimizer.safetensors", state="[1, 2]")
    return resume


def metadata_classes_a_string(tmp, mp):
    run, data = finished_run(tmp)
    edit_metadata(run / "model.safetensors", classes=json.dumps("blue,red"))
    return eval_with(run, data)


def metadata_version_not_a_number(tmp, mp):
    run, data = finished_run(tmp)
    edit_metadata(run / "model.safetensors", format_version="one")
    return eval_with(run, data)


def metadata_model_not_json(tmp, mp):
    run, data = finished_run(tmp)
    edit_metadata(run / "model.safetensors", model="{tiny-cnn")
    return eval_with(run, data)


def model_missing_a_tensor(tmp, mp):
    run, data = finished_run(tmp)
    tensors, meta = load_tensors(run / "model.safetensors")
    save_tensors(run / "model.safetensors", {k: v for k, v in tensors.items() if k != "head.3.bias"}, meta)
    return eval_with(run, data)


def checkpoint_missing_tensors(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    path = out / "checkpoint" / "epoch-0001" / "trained.safetensors"
    tensors, meta = load_tensors(path)
    save_tensors(path, dict(list(tensors.items())[1:]), meta)  # the first of them gone
    return resume


def run_naming_itself(tmp, mp):
    run, data = finished_run(tmp)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("model: tiny-cnn", f"model: {run}"))
    return eval_with(run, data)


def runs_naming_each_other(tmp, mp):
    a, data = finished_run(tmp)
    b = tmp / "b"
    shutil.copytree(a, b)
    for run, other in ((a, b), (b, a)):
        config = run / "config.yaml"
        config.write_text(config.read_text().replace("model: tiny-cnn", f"model: {other}"))
    return eval_with(a, data)


# ---------------------------------------------------------------- links planted in a run


def cache_linked_outside(tmp, mp):
    out, resume = cached_unfinished_run(tmp)
    os.symlink(outside(tmp), out / "cache")
    return resume


def checkpoint_linked_outside(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    folder = outside(tmp)
    shutil.move(out / "checkpoint", folder / "checkpoint")
    os.symlink(folder / "checkpoint", out / "checkpoint")
    return resume


def epoch_folder_linked_outside(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    folder = outside(tmp)
    shutil.move(out / "checkpoint" / "epoch-0001", folder / "epoch-0001")
    os.symlink(folder / "epoch-0001", out / "checkpoint" / "epoch-0001")
    return resume


def model_file_linked_outside(tmp, mp):
    out, resume = unfinished_image_run(tmp)
    folder = outside(tmp)
    shutil.move(out / "model.safetensors", folder / "model.safetensors")
    os.symlink(folder / "model.safetensors", out / "model.safetensors")
    return resume


def lock_file_linked_outside(tmp, mp):
    data = write_image_folder(tmp / "img")
    (tmp / "run").mkdir()
    os.symlink(outside(tmp) / "precious.txt", tmp / "run" / ".tunelab.lock")
    return image_train(data, tmp / "run")


def check_outside_untouched(tmp, error):
    assert sorted(p.name for p in (tmp / "outside").iterdir())[-2:] == ["precious.txt", "train-0.npy"]
    assert (tmp / "outside" / "precious.txt").read_text() == "the user's own file"


# ---------------------------------------------------------------- full and read-only disks


def full_disk_as_safetensors_reports_it(tmp, mp):
    """safetensors raises its own SafetensorError on a full disk, after writing part of the file."""
    real = checkpoint_io.safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if Path(filename).parent.name == "epoch-0002" and ".optimizer.safetensors." in Path(filename).name:
            Path(filename).write_bytes(b"\x00" * 100)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata)

    mp.setattr(checkpoint_io.safetensors.torch, "save_file", save_file)
    data = write_image_folder(tmp / "img")
    argv = image_train(data, tmp / "run", "--batch-size", "8")
    argv[argv.index("none")] = "full"
    argv[argv.index("--epochs") + 1] = "3"
    return argv


def check_previous_checkpoint_whole(tmp, error):
    run = tmp / "run"
    assert (run / "checkpoint" / "latest").read_text() == "epoch-0001"
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["epoch-0001", "latest"]  # no partial epoch-0002
    assert sorted(p.name for p in (run / "checkpoint" / "epoch-0001").iterdir()) == [
        "optimizer.safetensors",
        "state.json",
        "trained.safetensors",
    ]
    argv = image_train(tmp / "img", run, "--batch-size", "8", "--resume")
    argv[argv.index("none")] = "full"
    argv[argv.index("--epochs") + 1] = "3"
    assert main(argv) == 0  # the disk has room again
    assert load_json(run / "summary.json")["epochs"] == 3


def full_disk_spilling_the_cache(tmp, mp):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    mp.setattr(feature_cache.os, "posix_fallocate", no_space)
    data = write_image_folder(tmp / "img")
    return image_train(data, tmp / "run", "--cache-memory-mb", "0")


def read_only(folder: Path, mp: pytest.MonkeyPatch) -> None:
    """Make `folder` read-only as a read-only mount is: creating anything in it fails with EROFS.

    Done at the system-call wrappers because file modes do not stop root (these tests may run as root); the
    focused test below uses a real read-only mount where the machine allows one.
    """
    folder = folder.resolve()
    real_open, real_mkdir = os.open, os.mkdir

    def refused(path) -> bool:
        return Path(os.path.abspath(path)).resolve().parent == folder

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_CREAT and refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def mkdir(path, mode=0o777, *, dir_fd=None):
        if refused(path) and not os.path.isdir(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, mode, dir_fd=dir_fd)

    mp.setattr(os, "open", open_)
    mp.setattr(os, "mkdir", mkdir)


def read_only_out(tmp, mp):
    data = write_image_folder(tmp / "img")
    (tmp / "run").mkdir()
    read_only(tmp / "run", mp)
    return image_train(data, tmp / "run")


def read_only_out_parent(tmp, mp):
    data = write_image_folder(tmp / "img")
    (tmp / "ro").mkdir()
    read_only(tmp / "ro", mp)
    return image_train(data, tmp / "ro" / "run")


def read_only_export_target(tmp, mp):
    pytest.importorskip("onnx", reason="ONNX export needs the [export] extra")
    run, _ = finished_run(tmp)
    (tmp / "exports").mkdir()
    read_only(tmp / "exports", mp)
    return ["export", "--run", str(run), "--out", str(tmp / "exports" / "model.onnx")]


def stale_lock_file(tmp, mp):
    """A lock file a killed process left (its pid inside, nobody holding it): the next run takes it over."""
    data = write_image_folder(tmp / "img")
    (tmp / "run").mkdir()
    (tmp / "run" / ".tunelab.lock").write_text("999999\n")
    return image_train(data, tmp / "run")


DAMAGED = r"; the run is damaged: train it again$"
CASES = [
    # damaged run files
    Case(
        "summary-not-an-object", summary_not_an_object, r"summary\.json: expected a JSON object, found a list" + DAMAGED
    ),
    Case(
        "summary-string-score",
        summary_string_score,
        r"summary\.json: 'score' must be a number, found a string" + DAMAGED,
    ),
    Case(
        "summary-version-as-text",
        summary_version_as_text,
        r"summary\.json: 'format_version' must be an integer, found a string" + DAMAGED,
    ),
    Case(
        "summary-classes-not-strings",
        summary_classes_not_strings,
        r"summary\.json: 'classes' must be a list of strings, found a list" + DAMAGED,
    ),
    Case(
        "summary-damaged-on-resume",
        summary_of_a_finished_run_damaged_on_resume,
        r"summary\.json: expected a JSON object, found a string" + DAMAGED,
    ),
    Case("metrics-line-damaged", metrics_line_damaged, r"metrics\.jsonl:2: invalid JSON: Expecting value" + DAMAGED),
    Case("state-not-an-object", state_not_an_object, r"state\.json: expected a JSON object, found a number" + DAMAGED),
    Case(
        "state-epoch-as-text", state_epoch_as_text, r"state\.json: 'epoch' must be an integer, found a string" + DAMAGED
    ),
    Case("state-without-scheduler", state_without_scheduler, r"state\.json: lacks scheduler; the run is damaged"),
    Case(
        "optimizer-state-not-an-object",
        optimizer_state_not_an_object,
        r"optimizer\.safetensors: damaged optimizer metadata \('state' is not an object of objects\)" + DAMAGED,
    ),
    Case(
        "metadata-classes-a-string",
        metadata_classes_a_string,
        r"model\.safetensors: metadata 'classes' must be a list of strings, found a string" + DAMAGED,
    ),
    Case(
        "metadata-version-not-a-number",
        metadata_version_not_a_number,
        r"model\.safetensors: metadata 'format_version' must be an integer, found 'one'" + DAMAGED,
    ),
    Case("metadata-model-not-json", metadata_model_not_json, r"model\.safetensors: metadata 'model' is not valid JSON"),
    Case(
        "model-missing-a-tensor",
        model_missing_a_tensor,
        r"model\.safetensors does not fit this model .*: tensor head\.3\.bias is missing$",
    ),
    Case(
        "checkpoint-missing-tensors",
        checkpoint_missing_tensors,
        r"epoch-0001/trained\.safetensors does not fit this model .*: tensor \S+ is missing$",
    ),
    Case(
        "run-naming-itself-as-model",
        run_naming_itself,
        r"run directories name each other as their model \((\S*/image-run) -> \1\)",
    ),
    Case(
        "runs-naming-each-other",
        runs_naming_each_other,
        r"name each other as their model \((\S*/image-run) -> \S*/b -> \1\); a run's model must lead to a zoo",
    ),
    # links planted in a run: refused before anything is written or deleted, nothing outside touched
    Case(
        "cache-linked-outside",
        cache_linked_outside,
        r"run/cache is a symbolic link \(to \S*/outside\); a run writes and deletes only inside its own folder",
        check_outside_untouched,
    ),
    Case(
        "checkpoint-linked-outside",
        checkpoint_linked_outside,
        r"run/checkpoint is a symbolic link \(to \S*/outside/checkpoint\)",
        check_outside_untouched,
    ),
    Case(
        "epoch-folder-linked-outside",
        epoch_folder_linked_outside,
        r"run/checkpoint/epoch-0001 is a symbolic link \(to \S*/outside/epoch-0001\)",
        check_outside_untouched,
    ),
    Case(
        "model-file-linked-outside",
        model_file_linked_outside,
        r"run/model\.safetensors is a symbolic link \(to \S*/outside/model\.safetensors\)",
        check_outside_untouched,
    ),
    Case(
        "lock-file-linked-outside",
        lock_file_linked_outside,
        r"run/\.tunelab\.lock is a symbolic link; a run writes only inside its folder: remove the link$",
        check_outside_untouched,
    ),
    # full and read-only disks
    Case(
        "full-disk-as-safetensors-reports-it",
        full_disk_as_safetensors_reports_it,
        r"cannot write \S*/epoch-0002/optimizer\.safetensors: No space left on device; nothing was overwritten$",
        check_previous_checkpoint_whole,
    ),
    Case(
        "full-disk-spilling-the-cache",
        full_disk_spilling_the_cache,
        r"cannot spill the feature cache to \S*/run/cache/train-0\.npy \(\d+ MB\): No space left on device; "
        r"free disk space, raise --cache-memory-mb .* or turn the cache off with --no-cache$",
    ),
    Case(
        "read-only-out",
        read_only_out,
        r"cannot write in --out \S*/run: Read-only file system; give a folder you can write to$",
    ),
    Case(
        "read-only-out-parent",
        read_only_out_parent,
        r"cannot create --out \S*/ro/run: Read-only file system; give a folder you can write to$",
    ),
    Case(
        "read-only-export-target",
        read_only_export_target,
        r"cannot write \S*/exports/model\.onnx: Read-only file system; nothing was overwritten$",
    ),
    Case("stale-lock-file-is-taken-over", stale_lock_file, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_run_file(case, tmp_path, capsys, monkeypatch):
    check_case(case, tmp_path, capsys, monkeypatch)


# ---------------------------------------------------------------- the lock


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock (as a running `tunelab train` does) until it is killed."""
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(folder / '.tunelab.lock')!r}, os.O_RDWR | os.O_CREAT, 0o666)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_a_run_folder_in_use_is_refused_and_left_alone(tmp_path, capsys):
    out, resume = unfinished_image_run(tmp_path)
    holder = _hold_lock(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    try:
        capsys.readouterr()
        assert main(resume) == 2
        error = capsys.readouterr().err.splitlines()[-1]
        assert error == (
            f"tunelab: error: {out} is in use by another tunelab process (pid {holder.pid}); "
            "wait for it to end or choose another --out"
        )
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # the lock file included
    finally:
        holder.kill()
        holder.wait()
    # the holder died: the kernel released its lock, and the lock file it left is taken over (the stale-lock rule)
    assert main(resume) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "metrics.jsonl",
        "model.safetensors",
        "summary.json",
    ]


def test_the_lock_is_released_when_a_run_fails(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    assert main(image_train(data, out, "--lr", "-1")) == 2  # refused after the lock was taken
    assert not out.exists()
    assert main(image_train(data, out)) == 0
    with open(out / ".tunelab.lock", "w") as f:  # nothing holds a lock on the folder any more
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.slow
def test_two_trainings_started_half_a_second_apart_do_not_both_succeed(tmp_path):
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    # Enough epochs that the first run still trains while the second starts up (imports take seconds on a
    # loaded machine); the second starts 0.5 s after the first holds the lock, so the race is the one under test.
    argv = [
        sys.executable,
        "-m",
        "tunelab",
        *image_train(data, out, "--strategy", "full", "--no-cache", "--epochs", "80"),
    ]
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (out / ".tunelab.lock").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    second = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    errors = [first.communicate(timeout=300)[1], second.communicate(timeout=300)[1]]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], errors
    loser = errors[[first.returncode, second.returncode].index(2)]
    assert loser.splitlines()[-1].startswith(f"tunelab: error: {out} is in use by another tunelab process (pid ")
    assert load_json(out / "summary.json")["epochs"] == 80
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "metrics.jsonl",
        "model.safetensors",
        "summary.json",
    ]


# ---------------------------------------------------------------- SIGTERM


def _terminated_at_epoch(argv: list[str], epoch: int) -> int:
    """Run `tunelab train` and send this process a real SIGTERM when epoch index `epoch` starts."""
    real_epoch = epoch_module._train_epoch

    def epoch_then_sigterm(*args, **kwargs):
        if args[-2] == epoch:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(epoch_module, "_train_epoch", epoch_then_sigterm)
        previous = signal.getsignal(signal.SIGTERM)
        code = main(argv)
        assert signal.getsignal(signal.SIGTERM) == previous  # main puts the handler back
    return code


def test_sigterm_before_the_first_epoch_leaves_nothing(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new", empty):  # a folder the run made, and one that was there
        argv = image_train(data, out, "--cache-memory-mb", "0", "--epochs", "3")  # the cache spills to disk
        assert _terminated_at_epoch(argv, 0) == TERMINATED_EXIT == 143
        lines = capsys.readouterr().err.split("\n")
        assert "caching train features" in "".join(lines)  # config.yaml and the cache had been written
        errors = [line for line in lines if line.startswith("tunelab: error: ")]
        assert errors == ["tunelab: error: interrupted before the first epoch completed; nothing was saved"]
    assert not (tmp_path / "new").exists()
    assert list(empty.iterdir()) == []


def test_sigterm_keeps_the_last_epoch_and_resume_finishes_it(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    argv = image_train(data, out, "--epochs", "3")
    assert _terminated_at_epoch(argv, 2) == 143
    err = capsys.readouterr().err
    assert (
        err.split("\n")[-2]
        == f"tunelab: error: interrupted; the last completed epoch is saved in {out}: add --resume to continue"
    )
    assert (out / "checkpoint" / "latest").read_text() == "epoch-0002"
    assert not (out / ".tunelab.lock").exists()
    assert main([*argv, "--resume"]) == 0
    assert load_json(out / "summary.json")["epochs"] == 3


@pytest.mark.slow
def test_a_real_sigterm_from_outside(tmp_path):
    """`kill <pid>` as a supervisor sends it: exit 143, the hint on a line of its own, the epoch kept."""
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "tunelab", *image_train(data, out, "--epochs", "200", "--batch-size", "2")]
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint" / "latest").is_file():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 143, err[-2000:]
    errors = [line for line in err.split("\n") if line.startswith("tunelab: error: ")]  # as grep sees a log
    assert len(errors) == 1 and errors[0].endswith("add --resume to continue")
    assert (out / "checkpoint" / "latest").is_file() and not (out / "cache").exists()


# ---------------------------------------------------------------- output and modes


def test_an_error_after_a_progress_bar_starts_its_own_line(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    argv = image_train(data, tmp_path / "run", "--lr", "1e5", "--epochs", "8", "--batch-size", "6", "--no-cache")
    argv += ["--grad-clip", "none", "--warmup", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "\r" in err  # progress bars were drawn
    errors = [line for line in err.split("\n") if line.startswith("tunelab: error: ")]
    assert len(errors) == 1 and "loss became" in errors[0]


def test_run_files_follow_the_umask_like_ordinary_files(tmp_path):
    reference = tmp_path / "reference"
    reference.write_text("x")
    data = write_image_folder(tmp_path / "img")
    argv = image_train(data, tmp_path / "run", "--epochs", "3")
    argv[argv.index("none")] = "full"
    run_until_interrupted(argv, stop_at_epoch=1)  # so checkpoint files are on disk too
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".safetensors", ".json", ".yaml", ".jsonl"}
    assert {p.name: oct(p.stat().st_mode) for p in files} == {p.name: oct(reference.stat().st_mode) for p in files}


def test_every_file_a_run_writes_passes_the_inside_check_first(tmp_path, monkeypatch):
    """Every atomic write of a run (config, metrics, model, checkpoint files, pointer, summary) and the spilled
    cache go through RunDir.inside, the one place a link planted in the run is refused."""
    from tunelab import fileio
    from tunelab.runs.rundir import RunDir

    checked: set[Path] = set()
    written: list[Path] = []
    real_inside, real_open_temp = RunDir.inside, fileio._open_temp

    def inside(self, path):
        checked.add(Path(path))
        return real_inside(self, path)

    def open_temp(path):
        written.append(Path(path))
        return real_open_temp(path)

    monkeypatch.setattr(RunDir, "inside", inside)
    monkeypatch.setattr(fileio, "_open_temp", open_temp)
    data = write_image_folder(tmp_path / "img")
    assert main(image_train(data, tmp_path / "run", "--epochs", "2", "--cache-memory-mb", "0")) == 0
    names = {p.name for p in written}
    assert {"config.yaml", "metrics.jsonl", "model.safetensors", "latest", "summary.json", "state.json"} <= names
    assert set(written) <= checked, sorted(set(written) - checked)
    assert tmp_path / "run" / "cache" / "train-0.npy" in checked


# ---------------------------------------------------------------- a real full or read-only file system


def _user_namespace() -> bool:
    """Whether this machine lets an unprivileged process mount a file system of its own (unshare -rm)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _user_namespace(), reason="needs `unshare -rm` (user namespaces)")


DRIVER = """
import os, subprocess, sys
done = subprocess.run(sys.argv[2:])
print(f"exit={done.returncode}", sorted(os.listdir(sys.argv[1])))
"""
"""Runs a command inside the namespace and reports its exit code and what the mounted folder holds after it."""


def _in_small_mount(tmp_path: Path, options: str, command: list[str]) -> subprocess.CompletedProcess:
    """Run `command` with a fresh tmpfs mounted (with `options`) on tmp_path/disk, in a mount namespace of its
    own; its stdout ends with 'exit=N [what the disk holds afterwards]'."""
    disk = tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    (tmp_path / "driver.py").write_text(DRIVER)
    script = f'mount -t tmpfs -o {options} tmpfs {disk} && exec "$@"'
    argv = ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, str(tmp_path / "driver.py"), str(disk)]
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*argv, *map(str, command)], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
@needs_mount
def test_a_really_full_disk_while_the_cache_spills_is_one_line_not_sigbus(tmp_path):
    """The spill file is memory-mapped: on a full disk its pages would fault with SIGBUS and no message.
    `retrain:1` caches the first block's feature maps (`none` caches pooled vectors, which would fit)."""
    data = write_image_folder(tmp_path / "img")
    out = tmp_path / "disk" / "run"
    extra = ("--strategy", "retrain:1", "--cache-memory-mb", "0")
    train = [sys.executable, "-m", "tunelab", *image_train(data, out, *extra)]
    done = _in_small_mount(tmp_path, "size=256k", train)  # room for the small run files, not the cache
    assert done.stdout.strip().endswith("exit=2 []"), done.stdout + done.stderr[-2000:]  # the folder it made is gone
    errors = [line for line in done.stderr.split("\n") if line.startswith("tunelab: error: ")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith(f"tunelab: error: cannot spill the feature cache to {out}/cache/train-0.npy")
    assert "No space left on device" in errors[0]


@pytest.mark.slow
@needs_mount
def test_a_really_read_only_out_and_export_target(tmp_path):
    run, data = finished_run(tmp_path)
    train = [sys.executable, "-m", "tunelab", *image_train(data, tmp_path / "disk" / "run")]
    done = _in_small_mount(tmp_path, "ro,size=64k", train)
    assert done.stdout.strip().endswith("exit=2 []"), done.stdout + done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"tunelab: error: cannot create --out {tmp_path / 'disk' / 'run'}: Read-only file system; "
        "give a folder you can write to"
    )
    pytest.importorskip("onnx", reason="ONNX export needs the [export] extra")
    export = [sys.executable, "-m", "tunelab", "export", "--run", run, "--out", tmp_path / "disk" / "m.onnx"]
    done = _in_small_mount(tmp_path, "ro,size=64k", export)
    assert done.stdout.strip().endswith("exit=2 []"), done.stdout + done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"tunelab: error: cannot write {tmp_path / 'disk' / 'm.onnx'}: Read-only file system; nothing was overwritten"
    )


def test_missing_tensor_is_refused_even_when_every_other_tensor_fits(tmp_path):
    """A checkpoint lacking one trained tensor would otherwise load with that tensor left at its initial value."""
    from tunelab.errors import TunelabError
    from tunelab.runs.prepare import prepare
    from tunelab.runs.trained import load_trained, save_trained

    plan = prepare("tiny-cnn", "adapter", 2)
    path = tmp_path / "model.safetensors"
    save_trained(path, plan.backbone.model, {"classes": ["a", "b"]})
    tensors, meta = load_tensors(path)
    adapter = next(k for k in tensors if "adapter" in k)
    save_tensors(path, {k: v for k, v in tensors.items() if k != adapter}, meta)
    fresh = prepare("tiny-cnn", "adapter", 2)
    with pytest.raises(TunelabError, match=f"tensor {adapter} is missing$"):
        load_trained(path, fresh.backbone.model)


@pytest.mark.slow
def test_sigterm_and_disk_full_trials_stop_cleanly_and_resume_like_an_uninterrupted_run(tmp_path):
    """The kill trials' SIGTERM and disk-full kinds (benchmarks/kill_trials.py), one and two of them."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_trials.py"
    spec = importlib.util.spec_from_file_location("kill_trials", path)
    kill_trials = importlib.util.module_from_spec(spec)
    sys.modules["kill_trials"] = kill_trials  # its dataclasses look their module up there
    spec.loader.exec_module(kill_trials)
    results = kill_trials.run_trials(0, 2, 3, tmp_path, log=lambda *a: None, term_trials=1, disk_trials=2)
    assert [r.kind for r in results] == ["SIGTERM", "disk full", "disk full"]
    for r in results:
        assert r.passed, r
