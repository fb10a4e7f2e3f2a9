"""What a run trained, as tensors on disk, and a finished run loaded back as a model.

A run's model.safetensors (and each checkpoint's trained.safetensors) holds only what the strategy
trained: head, adapters or LoRA, unfrozen blocks and their BatchNorm statistics. The rest is rebuilt from
the zoo by name, so a `none` checkpoint of MobileNetV2 is a few kilobytes. Where these files live is
`runs.rundir`.

May import: errors, fileio, settings, strategies, runs.checkpoint_io, runs.image_size, runs.prepare, runs.rundir,
runs.run_files.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunelab.errors import TunelabError, brief
from tunelab.runs.checkpoint_io import load_tensors, save_tensors
from tunelab.runs.image_size import with_image_size
from tunelab.runs.prepare import prepare
from tunelab.runs.run_files import FORMAT_VERSION, read_model_meta, read_summary
from tunelab.runs.rundir import RunDir
from tunelab.settings import TrainConfig, from_yaml_file
from tunelab.strategies import Plan


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus the buffers (BatchNorm statistics) of modules that own trainable parameters."""
    state = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    for module_name, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                if buffer is not None:
                    state[f"{module_name}.{buffer_name}" if module_name else buffer_name] = buffer.detach()
    return state


def save_trained(path: Path, model: nn.Module, metadata: dict, extra: dict[str, torch.Tensor] | None = None) -> int:
    """Write the trained tensors atomically (plus `extra` tensors of the model, e.g. the BatchNorm statistics
    AdaBN re-estimated in frozen layers, which `load_trained` loads too); returns the file size in bytes."""
    meta = {"format_version": str(FORMAT_VERSION), **{k: json.dumps(v) for k, v in metadata.items()}}
    save_tensors(path, {**trained_state(model), **(extra or {})}, meta)
    return path.stat().st_size


def load_trained(path: Path, model: nn.Module) -> dict:
    """Load trained tensors into a model built the same way; returns the decoded metadata (checked).

    The file must hold exactly what the strategy trains on this model: a tensor the model does not have, a
    tensor of another shape, or a trained tensor missing from the file (which would silently keep its
    initial value, and score lower without a word) is refused, naming the first such tensor.
    """
    tensors, raw = load_tensors(path)
    meta = read_model_meta(raw, path)
    expected = model.state_dict()
    unknown = [k for k in tensors if k not in expected]
    wrong = [k for k in tensors if k in expected and expected[k].shape != tensors[k].shape]
    missing = [k for k in trained_state(model) if k not in tensors]
    if unknown or wrong or missing:
        if unknown:
            detail = f"unknown tensors {unknown[:3]}"
        elif wrong:
            detail = (
                f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, model needs {tuple(expected[wrong[0]].shape)}"
            )
        else:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            detail = f"tensor {missing[0]} is missing{more}"
        raise TunelabError(
            f"{path} does not fit this model (another backbone, strategy or number of classes?): {detail}"
        )
    model.load_state_dict(tensors, strict=False)
    return meta


@dataclass(frozen=True)
class LoadedRun:
    """A finished run, rebuilt: its config, its classes and the plan holding the trained weights."""

    run: RunDir
    """Where it was loaded from."""
    config: TrainConfig
    """The run's resolved configuration."""
    classes: tuple[str, ...]
    """Class names, in label order."""
    plan: Plan
    """The backbone with the strategy applied, the best epoch's weights loaded and the run's image size."""

    @property
    def task(self) -> str:
        """The task the run was trained for (runs from before tasks were recorded: classification by modality)."""
        task = self.config.task
        return task if task != "auto" else f"{self.plan.backbone.modality}-classification"


_LOADING: ContextVar[tuple[tuple[Path, str], ...]] = ContextVar("runs_being_loaded", default=())
"""The runs being loaded right now, outermost first: (resolved path, the name it was given by)."""


@contextmanager
def _loading(path: Path):
    """Mark run `path` as being loaded; meeting it again while its own model is being built is a cycle.

    A run's config.yaml names its model, and that model may be another run (`runs.as_model`): a run that
    names itself, or two runs that name each other, would otherwise recurse without end.
    """
    chain = _LOADING.get()
    key = path.resolve()
    if any(key == seen for seen, _ in chain):
        names = [name for _, name in chain] + [str(path)]
        raise TunelabError(
            f"run directories name each other as their model ({brief(' -> '.join(names), 300)}); "
            "a run's model must lead to a zoo or hub model in the end"
        )
    token = _LOADING.set((*chain, (key, str(path))))
    try:
        yield
    finally:
        _LOADING.reset(token)


def load_run(path: str | Path, trust_remote_code: bool = False) -> LoadedRun:
    """Rebuild a finished run's model from the zoo plus its checkpoint.

    The run's own config.yaml never turns on `trust_remote_code` (a shared run directory could), only the caller.
    """
    with _loading(Path(path)):
        return _load_run(Path(path), trust_remote_code)


def _load_run(path: Path, trust_remote_code: bool) -> LoadedRun:
    run = RunDir(path)
    if not run.path.is_dir():
        raise TunelabError(f"{run.path}: no such run directory")
    if not run.complete or not run.model.is_file() or not run.config.is_file():
        raise TunelabError(
            f"{run.path}: incomplete run (no summary.json/model.safetensors); "
            "finish it with `tunelab train ... --resume`"
        )
    read_summary(run.summary)  # a newer format or a damaged file: one line, before any model is built
    config = from_yaml_file(TrainConfig, run.config)
    _, raw = load_tensors(run.model)
    classes = tuple(read_model_meta(raw, run.model, required=("classes",))["classes"])
    plan = prepare(
        config.model,
        config.strategy,
        len(classes),
        trust_remote_code,
        task=None if config.task == "auto" else config.task,
    )
    load_trained(run.model, plan.backbone.model)
    plan = with_image_size(plan, config.image_size)  # eval, predict and export at the size it trained at
    return LoadedRun(run, config, classes, plan)
