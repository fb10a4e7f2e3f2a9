"""Model sources beyond the named models: the timm and Hugging Face hubs, and saved model directories.

- `timm:<name>`: `timm.create_model(name, pretrained=...)`, downloading from the hub (needs internet);
- `hf:<model id>`: `AutoModel.from_pretrained(id)` and its tokenizer (needs internet, or the HF cache);
- a local directory: a saved Hugging Face model (config.json with `model_type`) or a timm checkpoint
  directory (config.json with `architecture`), as written by `save_pretrained`.

A Hugging Face repository or folder may ship its own Python code (`auto_map` in its config); loading it
runs that code. tunelab passes `trust_remote_code=False` unless the user gave `--trust-remote-code`, and
never leaves it unset, which would make transformers ask on stdin. timm reads safetensors, or `.pth`/`.bin`
with `weights_only=True`, so a pickle in a timm folder cannot run code either. The libraries are imported
when a model is built (they are heavy, and a name need not be loaded to be recognised).

Sources are asked in increasing `order` (see `registry`): the prefixes first, then directories; a tunelab
run directory (`runs.as_model`, order 30) is recognised before a plain model directory (order 40).

May import: errors, models.contract, models.registry, models.families (and timm, transformers).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.models.families import timm as timm_family
from tunelab.models.families import transformers as transformers_family
from tunelab.models.registry import ModelSource, register_source

TIMM_PREFIX = "timm:"
HF_PREFIX = "hf:"


def from_timm_hub(name: str, pretrained: bool, trust_remote_code: bool = False) -> Backbone:
    """`timm:<arch>` from timm's hub (timm models ship no code, so `trust_remote_code` does not apply)."""
    import timm  # lazy: heavy (see the module docstring)

    arch = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(arch.split(".")[0]):
        raise TunelabError(f"timm has no model '{arch}'; see timm.list_models()")
    try:
        net = timm.create_model(arch, pretrained=pretrained)
    except OSError as e:  # no network, or the weights are not on the hub
        raise TunelabError(f"cannot download timm weights for '{arch}': {e}") from None
    return timm_family.from_timm(net, name, pretrained=pretrained)


def from_hf_hub(name: str, pretrained: bool, trust_remote_code: bool = False) -> Backbone:
    """`hf:<model id>` from the Hugging Face hub (or its local cache)."""
    return _from_hf(name.removeprefix(HF_PREFIX), name, pretrained, trust_remote_code)


def _from_hf(model_id: str, name: str, pretrained: bool, trust_remote_code: bool) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # lazy: heavy (see the module docstring)

    trust = {"trust_remote_code": bool(trust_remote_code)}  # never None: transformers would prompt on stdin
    try:
        with transformers_family.quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(model_id, **trust)
            if pretrained:
                net = AutoModel.from_pretrained(model_id, add_pooling_layer=False, **trust)
            else:
                net = AutoModel.from_config(
                    AutoConfig.from_pretrained(model_id, **trust), add_pooling_layer=False, **trust
                )
    except OSError as e:  # no network, unknown id, or a folder without weights
        raise TunelabError(f"cannot load Hugging Face model '{model_id}': {e}") from None
    except ValueError as e:  # among others: the model ships code and trust_remote_code is off
        if not trust_remote_code and "trust_remote_code" in str(e):
            raise TunelabError(
                f"Hugging Face model '{model_id}' ships its own Python code, which tunelab does not run by default; "
                "read it, and if you trust it, add --trust-remote-code"
            ) from None
        raise TunelabError(f"cannot load Hugging Face model '{model_id}': {' '.join(str(e).split())}") from None
    return transformers_family.from_transformers(net, tokenizer, name, pretrained=pretrained)


def from_directory(name: str, pretrained: bool, trust_remote_code: bool = False) -> Backbone:
    """A folder written by `save_pretrained` (transformers or timm), told apart by its config.json."""
    folder = Path(name)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TunelabError(
            f"{folder}: not a model directory (no config.json); "
            "expected a save_pretrained() folder or a tunelab run directory"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise TunelabError(f"{config_path}: invalid JSON: {e}") from None
    if "architecture" in config:  # timm's save format
        import timm  # lazy: heavy (see the module docstring)

        try:  # timm reads safetensors, or .pth/.bin with weights_only=True: a pickle cannot run code here
            net = timm.create_model(f"local-dir:{folder}", pretrained=pretrained)
        except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
            raise TunelabError(f"{folder}: cannot load the timm model: {' '.join(str(e).split())[:300]}") from None
        return timm_family.from_timm(net, str(folder), pretrained=pretrained)
    if "model_type" in config:
        return _from_hf(str(folder), str(folder), pretrained, trust_remote_code)
    raise TunelabError(f"{config_path}: neither a timm ('architecture') nor a transformers ('model_type') config")


register_source(ModelSource("timm:<name>", 10, lambda name: name.startswith(TIMM_PREFIX), from_timm_hub))
register_source(ModelSource("hf:<model id>", 20, lambda name: name.startswith(HF_PREFIX), from_hf_hub))
register_source(ModelSource("a local model directory", 40, lambda name: Path(name).is_dir(), from_directory))
