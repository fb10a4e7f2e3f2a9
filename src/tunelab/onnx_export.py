"""A finished run as one ONNX file for serving: LoRA merged, adapters included, classes and preprocessing inside.

The run is rebuilt as `tunelab eval` rebuilds it, LoRA is folded into the weights (`merge_lora`, so the
graph is the plain architecture), bottleneck adapters stay as the ordinary layers they are, and the network
is traced in eval mode (dropout off, BatchNorm statistics fixed) from its input to the logits:

- image runs: input `pixel_values` (batch, 3, size, size), already resized and normalised (size: the run's
  image_size, else its model's own; the metadata says which);
- text runs: the tokenizer's tensors (`input_ids`, `attention_mask`, and `token_type_ids` when the
  tokenizer makes them), batch and sequence length dynamic; the tokenizer is saved beside the model
  in `<name>.tokenizer/`, since ONNX holds no tokenizer.

Output `logits` (batch, classes). The file's metadata (`metadata_props`) holds what a server needs to use
it without tunelab: `classes` (JSON list, label order), `preprocessing` (JSON: mean, std, size, crop_pct,
interpolation for images; max_length for text), `model` and `strategy`.

We use the TorchScript-based exporter (`dynamo=False`): it handles our split-into-blocks BERT in seconds,
where the torch.export-based one takes about a minute on the tiny test model; parity with PyTorch is what
the tests check, on inputs of other batch sizes and lengths than the one traced. `onnx` is an optional
extra, imported when an export runs.

May import: errors, fileio, models, strategies, data, runs.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from tunelab.data.datasets import BATCH_KEYS
from tunelab.errors import TunelabError
from tunelab.fileio import atomic_write, make_folder
from tunelab.models.inputs import ImageInput
from tunelab.runs.trained import load_run
from tunelab.strategies.layers import merge_lora

FORMATS = ("onnx",)
OPSET = 17


class _TextLogits(nn.Module):
    """Positional tokenizer tensors -> logits: ONNX inputs are positional, our text blocks take a dict."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, tensors)))


def export(run_path: str | Path, out: str | Path, format: str = "onnx") -> Path:
    """Write the run's model to `out` in `format` (only 'onnx' for now); returns the path written."""
    if format not in FORMATS:
        raise TunelabError(f"cannot export to '{format}'; supported formats: {', '.join(FORMATS)}")
    try:
        import onnx
    except ImportError:
        raise TunelabError("ONNX export needs the onnx package: pip install 'tunelab[export]'") from None
    run = load_run(run_path)
    backbone = run.plan.backbone
    merge_lora(backbone.model)
    model = backbone.model.eval()
    if isinstance(backbone.input, ImageInput):
        size = backbone.input.size
        wrapped, names = model, ("pixel_values",)
        sample: tuple[torch.Tensor, ...] = (torch.zeros(2, 3, size, size),)
        axes = {"pixel_values": {0: "batch"}}
        preprocessing = asdict(backbone.input)
    else:
        tokenizer = backbone.input.tokenizer
        encoded = tokenizer(["a sample sentence", "another one"], padding=True, return_tensors="pt")
        names = tuple(key for key in BATCH_KEYS if key in encoded)
        wrapped, sample = _TextLogits(model, names).eval(), tuple(encoded[key] for key in names)
        axes = {name: {0: "batch", 1: "tokens"} for name in names}
        preprocessing = {"max_length": run.config.max_length or backbone.input.max_length}
    out = Path(out)
    metadata = {
        "classes": json.dumps(list(run.classes)),
        "preprocessing": json.dumps(preprocessing),
        "model": run.config.model,
        "strategy": run.config.strategy,
    }

    def write_onnx(temp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks: parity is tested instead
            torch.onnx.export(
                wrapped,
                sample,
                str(temp),
                input_names=list(names),
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        graph = onnx.load(str(temp))
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(temp))

    make_folder(out.parent)
    text = None if isinstance(backbone.input, ImageInput) else _Tokenizer(out, backbone.input.tokenizer)
    try:
        if text is not None:
            text.write()  # first: a folder that cannot be written to fails before the slow export
        atomic_write(out, write_onnx)  # a failed export leaves no half-written model under the requested name
        if text is not None:
            text.commit()
    except BaseException as e:
        if text is not None:
            text.discard()
        if isinstance(e, TunelabError) or not isinstance(e, Exception):
            raise
        # the tracer or ONNX can fail on an architecture in many ways; name the run
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise TunelabError(f"cannot export {run_path} to ONNX: {type(e).__name__}: {first_line}") from e
    return out


class _Tokenizer:
    """The tokenizer saved beside an exported text model (`<name>.tokenizer/`), replaced whole or not at all.

    It is written to a temporary folder beside its place first and moved there only once the model file is
    written, so a failure leaves neither a half-written tokenizer nor one that belongs to another model.
    """

    def __init__(self, out: Path, tokenizer):
        self.path = out.with_name(out.stem + ".tokenizer")
        self.temp = out.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.tokenizer = tokenizer

    def write(self) -> None:
        try:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.tokenizer.save_pretrained(str(self.temp))
        except OSError as e:
            raise TunelabError(f"cannot write the tokenizer to {self.path}: {e.strerror or e}") from e

    def commit(self) -> None:
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            os.replace(self.temp, self.path)
        except OSError as e:
            raise TunelabError(f"cannot write the tokenizer to {self.path}: {e.strerror or e}") from e

    def discard(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)
