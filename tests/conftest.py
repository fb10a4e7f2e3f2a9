"""Shared fixtures: tiny random models and batches for them. No network, ever."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from train_fixtures import write_image_folder, write_text_tsv  # noqa: E402

TINY_MODELS = ["tiny-cnn", "tiny-bert"]
SENTENCES = ["the movie was great", "an awful boring plot", "john visited paris and london", "good acting , bad story"]


def make_batch(backbone, seed: int = 0):
    """Four inputs of the kind the backbone takes (images or tokenized sentences) and labels 0,1,2,1."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 1, 2, 1])
    if backbone.modality == "image":
        return torch.randn(4, 3, 32, 32, generator=generator), labels
    batch = backbone.input.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    return dict(batch), labels


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A two-class folder of tiny random images (12 per class), written once per test module."""
    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """A small two-class sentence TSV, written once per test module."""
    return write_text_tsv(tmp_path_factory.mktemp("text") / "reviews.tsv")
