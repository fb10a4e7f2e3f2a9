"""Smoke tests on the real packaged weights: they load, verify, and still know what they learned."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tunelab import load_backbone

pytestmark = pytest.mark.smoke
CAT_CLASSES = {281, 282, 283, 284, 285}  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def imagenet_top1(backbone, image: Image.Image) -> int:
    from torchvision import transforms as T

    spec = backbone.input
    transform = T.Compose(
        [
            T.Resize(int(spec.size / spec.crop_pct), interpolation=T.InterpolationMode(spec.interpolation)),
            T.CenterCrop(spec.size),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )
    with torch.no_grad():
        return int(backbone.model.eval()(transform(image)[None]).argmax())


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_imagenet_models_see_a_cat_in_chelsea(name):
    from skimage import data

    backbone = load_backbone(name)
    assert backbone.num_outputs == 1000 and len(backbone.blocks) == 9
    assert imagenet_top1(backbone, Image.fromarray(data.chelsea())) in CAT_CLASSES


def test_minilm_puts_paraphrases_closer_than_unrelated_sentences():
    backbone = load_backbone("minilm-l6")
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    batch = dict(backbone.input.tokenizer(sentences, padding=True, return_tensors="pt"))
    with torch.no_grad():
        emb = F.normalize(backbone.model.eval()(batch), dim=-1)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > unrelated + 0.3
