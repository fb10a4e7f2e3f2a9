"""A finished run as one ONNX file for serving: LoRA merged, adapters included, classes and preprocessing inside.

The run is rebuilt as `tunelab eval` rebuilds it, LoRA is folded into the weights (`merge_lora`, so the
graph is the plain architecture), bottleneck adapters stay as the ordinary layers they are, and the network
is traced in eval mode (dropout off, BatchNorm statistics fixed) from its input to the logits:

- image runs: input `pixel_values` (batch, 3, size, size), already resized and normalised;
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

May import: errors, models, strategies, data, runs.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from tunelab.data.datasets import BATCH_KEYS
from tunelab.errors import TunelabError
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
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    try:
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
        metadata = {
            "classes": json.dumps(list(run.classes)),
            "preprocessing": json.dumps(preprocessing),
            "model": run.config.model,
            "strategy": run.config.strategy,
        }
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(temp))
        temp.replace(out)  # a failed export leaves no half-written model under the requested name
    except TunelabError:
        raise
    except Exception as e:  # the tracer or ONNX can fail on an architecture in many ways; name the run
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise TunelabError(f"cannot export {run_path} to ONNX: {type(e).__name__}: {first_line}") from e
    finally:
        temp.unlink(missing_ok=True)
    if not isinstance(backbone.input, ImageInput):
        backbone.input.tokenizer.save_pretrained(str(out.with_name(out.stem + ".tokenizer")))
    return out
