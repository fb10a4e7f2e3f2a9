"""An epoch's checkpoint commits whole or not at all, also when Ctrl-C or SIGTERM arrives in the middle of it.

The commit (checkpoint/latest pointed at the new folder, the older folder deleted) runs with the stop signals
held: a SIGTERM that landed between its two steps once left two epoch folders in CI.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from tunelab.runs import checkpoints
from tunelab.runs.checkpoints import CheckpointSaver, Progress
from tunelab.runs.held_signals import held_signals
from tunelab.runs.rundir import RunDir

needs_posix_signals = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt here, as in a terminal, whatever the test process inherited: a shell
    starts background jobs with SIGINT ignored, and Python then leaves it ignored (CI run with `&`)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _saver(tmp_path) -> CheckpointSaver:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    return CheckpointSaver(run, model, optimizer, scheduler, {"classes": ["a", "b"]})


def _epoch_folders(saver: CheckpointSaver) -> list[str]:
    return sorted(p.name for p in saver.run.checkpoint.glob("epoch-*"))


@needs_posix_signals
def test_a_signal_inside_the_block_is_delivered_when_it_ends(ctrl_c_raises):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the signal")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back as it was


@needs_posix_signals
def test_ctrl_c_between_pointing_latest_and_deleting_the_old_folder_still_completes_the_commit(
    tmp_path, monkeypatch, ctrl_c_raises
):
    saver = _saver(tmp_path)
    saver.save_epoch(Progress(epoch=1), improved=True)
    write = checkpoints.atomic_write_text

    def write_then_interrupt(path, text):
        write(path, text)
        if path.name == "latest":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after the pointer moved

    monkeypatch.setattr(checkpoints, "atomic_write_text", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        saver.save_epoch(Progress(epoch=2), improved=False)
    assert _epoch_folders(saver) == ["epoch-0002"]
    assert saver.run.latest.read_text() == "epoch-0002"


def test_a_stop_before_the_commit_removes_the_new_folder_and_keeps_the_last_epoch(tmp_path, monkeypatch):
    saver = _saver(tmp_path)
    saver.save_epoch(Progress(epoch=1), improved=True)

    def interrupted(path, obj):
        raise KeyboardInterrupt  # SIGTERM while the new folder's state.json is written

    monkeypatch.setattr(checkpoints, "save_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        saver.save_epoch(Progress(epoch=2), improved=False)
    assert _epoch_folders(saver) == ["epoch-0001"]
    assert saver.run.latest.read_text() == "epoch-0001"
