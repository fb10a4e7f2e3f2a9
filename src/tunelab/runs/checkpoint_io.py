"""Checkpoint tensors safely: tensors as safetensors, optimizer state without pickle, written atomically.

No pickle: loading a pickled checkpoint runs arbitrary code, and runs get shared. Optimizer state is
tensors (into safetensors) plus plain numbers and lists (into the safetensors metadata as JSON).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from tunelab.errors import TunelabError
from tunelab.fileio import atomic_write

OPTIMIZER_FORMAT = "tunelab-optimizer/1"
"""Metadata 'format' of optimizer files, so any other safetensors file is refused with a clear message."""


# ---------------------------------------------------------------- tensors


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous tensors with no shared storage: what safetensors requires (tied weights get copies)."""
    out, seen = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if storage[1] != 0 and storage in seen:
            tensor = tensor.clone()
            storage = (tensor.device, tensor.untyped_storage().data_ptr())
        seen.add(storage)
        out[name] = tensor
    return out


OS_ERROR = re.compile(r"\(os error (\d+)\)")
"""How safetensors (Rust) reports the operating system's error code inside its own exception's message."""


def _write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None) -> None:
    """safetensors.torch.save_file, with a file-system failure raised as the OSError it is.

    safetensors raises its own SafetensorError for everything, a full disk included ("I/O error: No space
    left on device (os error 28)"); as an OSError it gets what every other failed write gets
    (`fileio.atomic_write`): the temporary file removed, the old file kept, one line for the user.
    """
    try:
        safetensors.torch.save_file(tensors, path, metadata)
    except SafetensorError as e:
        code = OS_ERROR.search(str(e))
        if code is None:
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number), str(path)) from e


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors (and string metadata) as one safetensors file, atomically."""
    # save_file streams each tensor from its own memory; safetensors.torch.save would first build the whole
    # file as bytes (twice), which for a checkpoint's optimizer state is hundreds of MB of extra peak memory.
    tensors = _storable(tensors)
    atomic_write(path, lambda temp: _write_safetensors(tensors, temp, metadata))


def load_tensors(path: str | Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: (tensors by name, metadata). A damaged file is a TunelabError, not a crash."""
    path = Path(path)
    if not path.is_file():
        raise TunelabError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        with safe_open(path, framework="pt", device=device) as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise TunelabError(f"{path} is not a valid safetensors checkpoint (truncated or corrupt): {e}") from None
    return tensors, metadata


# ---------------------------------------------------------------- optimizer state


def _encode(value, tensors: dict[str, torch.Tensor], key: str):
    """A JSON-ready copy of `value`: tensors move to `tensors[key]`, tuples are tagged to come back as tuples."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"optimizer state {key}: only string keys can be saved, got {list(value)}")
        return {k: _encode(v, tensors, f"{key}.{k}") for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"optimizer state {key}: cannot save a {type(value).__name__} without pickle")


def _decoder(tensors: dict[str, torch.Tensor], path: Path):
    def hook(obj: dict):
        if obj.keys() == {"__tensor__"}:
            if obj["__tensor__"] not in tensors:
                raise TunelabError(f"{path}: optimizer state refers to missing tensor {obj['__tensor__']!r}")
            return tensors[obj["__tensor__"]]
        if obj.keys() == {"__tuple__"}:
            return tuple(obj["__tuple__"])
        return obj

    return hook


def _optimizer_name(optimizer) -> str:
    """The real optimizer's class name, looking through wrappers such as accelerate's AcceleratedOptimizer."""
    return type(getattr(optimizer, "optimizer", optimizer)).__name__


def save_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Save `optimizer.state_dict()` as safetensors: state tensors as 'state.<param index>.<name>', the rest as JSON."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state = {str(index): _encode(values, tensors, f"state.{index}") for index, values in state_dict["state"].items()}
    groups = _encode(state_dict["param_groups"], tensors, "param_groups")
    metadata = {
        "format": OPTIMIZER_FORMAT,
        "optimizer": _optimizer_name(optimizer),
        "state": json.dumps(state),
        "param_groups": json.dumps(groups),
    }
    save_tensors(path, tensors, metadata)


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore state saved by save_optimizer into `optimizer`, which must be built over the same parameters."""
    path = Path(path)
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != OPTIMIZER_FORMAT:
        raise TunelabError(f"{path} is not a tunelab optimizer checkpoint (no '{OPTIMIZER_FORMAT}' format tag)")
    saved, current = metadata.get("optimizer"), _optimizer_name(optimizer)
    if saved != current:
        raise TunelabError(f"{path} holds {saved} state; cannot load it into {current}")
    try:
        hook = _decoder(tensors, path)
        saved_state = json.loads(metadata["state"], object_hook=hook)
        groups = json.loads(metadata["param_groups"], object_hook=hook)
        if not isinstance(saved_state, dict) or not all(isinstance(v, dict) for v in saved_state.values()):
            raise ValueError("'state' is not an object of objects")
        if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
            raise ValueError("'param_groups' is not a list of groups with params")
        state = {int(index): values for index, values in saved_state.items()}
    except (KeyError, ValueError) as e:
        raise TunelabError(f"{path}: damaged optimizer metadata ({e}); the run is damaged: train it again") from None
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:  # torch: other groups or parameters per group, damaged values
        raise TunelabError(
            f"{path}: optimizer state does not fit this model ({e}); was it saved for another run?"
        ) from None
    _match_parameter_layouts(optimizer)


def _match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (AdamW's moments) its parameter's memory layout.

    Files hold the standard layout, but a parameter may be channels-last (the CNN backbones are). The fused
    AdamW kernel walks parameter, gradient and moments as flat memory, so a moment in another layout would
    be paired with the wrong elements: measured, three steps after such a restore a 4x3x3x3 weight was off
    by up to 4.3. Copying into `empty_like(param)` keeps the values and takes the parameter's layout.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
