"""Run files survive failures: atomic writes, safetensors round trips, and optimizer state restored exactly."""

from __future__ import annotations

import errno
import json
import os

import pytest
import safetensors.torch
import torch
from torch import nn

from tunelab import fileio
from tunelab.errors import DataError, TunelabError
from tunelab.fileio import atomic_write_bytes, atomic_write_text, load_json, save_json
from tunelab.runs import checkpoint_io
from tunelab.runs.checkpoint_io import load_optimizer, load_tensors, save_optimizer, save_tensors


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ---------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temp_files(tmp_path, monkeypatch, failing):
    path = tmp_path / "summary.json"
    path.write_text("old content")
    monkeypatch.setattr(fileio.os, failing, _enospc)
    with pytest.raises(TunelabError) as exc:
        atomic_write_text(path, "new content")
    assert str(exc.value) == f"cannot write {path}: No space left on device; nothing was overwritten"
    assert isinstance(exc.value.__cause__, OSError)
    monkeypatch.undo()
    assert path.read_text() == "old content"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_interrupted_write_reraises_as_is_and_cleans_up(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")
    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.safetensors"]


def test_disk_full_while_tensors_stream_to_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    """Tensors are written straight to the temporary file (no in-memory copy); a failure half-way is still atomic."""
    path = tmp_path / "trained.safetensors"
    save_tensors(path, {"w": torch.ones(3)})

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io.safetensors.torch, "save_file", half_written)
    with pytest.raises(TunelabError, match="No space left on device; nothing was overwritten"):
        save_tensors(path, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(load_tensors(path)[0]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["trained.safetensors"]


def test_write_replaces_creates_parents_and_gets_normal_permissions(tmp_path):
    path = tmp_path / "run" / "checkpoint" / "latest"
    atomic_write_text(path, "epoch-1")
    atomic_write_text(path, "epoch-2\n")
    assert path.read_text() == "epoch-2\n"
    assert os.listdir(path.parent) == ["latest"]
    reference = tmp_path / "reference"
    reference.write_text("x")  # what a plain open() creates under the current umask
    assert path.stat().st_mode == reference.stat().st_mode


# ---------------------------------------------------------------- JSON


def test_json_is_sorted_indented_and_round_trips(tmp_path):
    path = tmp_path / "summary.json"
    obj = {"b": [1, 2.5, None], "a": {"z": True, "y": "é"}}
    save_json(path, obj)
    assert load_json(path) == obj
    assert path.read_text(encoding="utf-8") == json.dumps(obj, indent=2, sort_keys=True) + "\n"


def test_json_errors_name_the_file(tmp_path):
    with pytest.raises(TunelabError, match="missing.json does not exist"):
        load_json(tmp_path / "missing.json")
    path = tmp_path / "state.json"
    path.write_text('{\n  "epoch": 3,\n  "best": \n}\n')
    with pytest.raises(DataError) as exc:
        load_json(path)
    assert exc.value.path == path and exc.value.line == 4 and "invalid JSON" in str(exc.value)


# ---------------------------------------------------------------- tensors


def test_tensors_and_metadata_round_trip(tmp_path):
    weight = torch.randn(4, 3)
    tensors = {
        "weight": weight,
        "tied": weight,  # shares memory: stored as a copy
        "row": weight[1],  # a view into the same storage
        "transposed": weight.t(),  # not contiguous
        "step": torch.tensor(7.0),  # 0-dim
        "ids": torch.arange(5, dtype=torch.int64),
        "half": torch.randn(3, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 2),
        "param": nn.Parameter(torch.ones(2)),  # requires grad
    }
    path = tmp_path / "model.safetensors"
    save_tensors(path, tensors, {"classes": '["cat", "dog"]'})
    loaded, metadata = load_tensors(path)
    assert metadata == {"classes": '["cat", "dog"]'}
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor.detach()), name
    assert load_tensors(path)[1] == metadata
    save_tensors(path, {"x": torch.ones(1)})
    assert load_tensors(path)[1] == {}


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_damaged_safetensors_file_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    save_tensors(path, {"w": torch.randn(64, 64)})
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * 100}[damage])
    expected = r"model.safetensors is not a valid safetensors checkpoint \(truncated or corrupt\)"
    with pytest.raises(TunelabError, match=expected):
        load_tensors(path)


def test_missing_tensor_file_is_a_clear_error(tmp_path):
    with pytest.raises(TunelabError, match="nope.safetensors does not exist"):
        load_tensors(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- optimizer


def _model() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _optimizer(model: nn.Sequential) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        [
            {"params": list(model[0].parameters()), "lr": 1e-2, "name": "backbone"},
            {"params": list(model[2].parameters()), "name": "head"},
        ],
        lr=3e-2,
        betas=(0.8, 0.95),
        weight_decay=0.05,
    )


def _train(model, optimizer, scheduler, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 5, generator=generator), torch.randint(0, 3, (16,), generator=generator)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def test_optimizer_round_trip_continues_bit_identically(tmp_path):
    model = _model()
    optimizer = _optimizer(model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))  # adds initial_lr
    _train(model, optimizer, scheduler, 3, seed=0)
    path = tmp_path / "optimizer.safetensors"
    save_optimizer(path, optimizer)

    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    fresh_optimizer = _optimizer(fresh)
    fresh_scheduler = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda step: 1 / (1 + step))
    load_optimizer(path, fresh_optimizer)  # after building the scheduler, which resets lr to initial_lr
    fresh_scheduler.load_state_dict(scheduler.state_dict())

    original, restored = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert all(type(g["betas"]) is tuple for g in restored["param_groups"])
    assert [g["name"] for g in restored["param_groups"]] == ["backbone", "head"]
    assert all("initial_lr" in g for g in restored["param_groups"])

    _train(model, optimizer, scheduler, 3, seed=1)
    _train(fresh, fresh_optimizer, fresh_scheduler, 3, seed=1)
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(a, b), name


def test_fused_adamw_state_restored_into_channels_last_weights_continues_identically(tmp_path):
    """Files hold the standard layout; the moments must take the (channels-last) parameter's layout on load,
    or the fused kernel, walking flat memory, pairs them with the wrong weights."""

    def conv_and_optimizer():
        torch.manual_seed(0)
        conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        return conv, torch.optim.AdamW(conv.parameters(), lr=0.1, fused=True)

    def steps(conv, optimizer, n, seed):
        generator = torch.Generator().manual_seed(seed)
        for _ in range(n):
            conv(torch.randn(2, 3, 6, 6, generator=generator)).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()

    conv, optimizer = conv_and_optimizer()
    steps(conv, optimizer, 2, seed=0)
    save_optimizer(tmp_path / "optimizer.safetensors", optimizer)
    fresh, fresh_optimizer = conv_and_optimizer()
    fresh.load_state_dict(conv.state_dict())
    load_optimizer(tmp_path / "optimizer.safetensors", fresh_optimizer)
    assert fresh_optimizer.state[fresh.weight]["exp_avg"].stride() == fresh.weight.stride()
    steps(conv, optimizer, 3, seed=1)
    steps(fresh, fresh_optimizer, 3, seed=1)
    assert torch.equal(conv.weight, fresh.weight) and torch.equal(conv.bias, fresh.bias)


def test_optimizer_file_is_plain_safetensors(tmp_path):
    model = _model()
    optimizer = _optimizer(model)
    _train(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), 1, seed=0)
    path = tmp_path / "optimizer.safetensors"
    save_optimizer(path, optimizer)
    tensors = safetensors.torch.load_file(path)
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step", "state.3.exp_avg"} <= tensors.keys()
    assert b"pickle" not in path.read_bytes() and not path.read_bytes().startswith(b"\x80")


def test_optimizer_mismatches_are_clear_errors(tmp_path):
    model = _model()
    path = tmp_path / "optimizer.safetensors"
    save_optimizer(path, _optimizer(model))
    with pytest.raises(TunelabError, match="holds AdamW state; cannot load it into SGD"):
        load_optimizer(path, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TunelabError, match="does not fit this model"):
        load_optimizer(path, torch.optim.AdamW(model.parameters()))  # one group instead of two
    weights = tmp_path / "model.safetensors"
    save_tensors(weights, dict(model.state_dict()))
    with pytest.raises(TunelabError, match="not a tunelab optimizer checkpoint"):
        load_optimizer(weights, _optimizer(model))
