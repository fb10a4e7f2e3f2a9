"""Tiny random models built offline in milliseconds: the test fixtures, and the named models `tiny-cnn` and
`tiny-bert` (registered below) for smoke runs.

They go through the same family adapters as the real models (torchvision MobileNetV2, transformers
BertModel), so a test on them exercises the real code paths, only smaller. The libraries are imported
when a model is built, so listing the names costs torch only.

May import: models.contract, models.inputs, models.registry, models.families.torchvision,
models.families.transformers (and torch, torchvision, tokenizers, transformers).
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

import torch

from tunelab.models.contract import Backbone
from tunelab.models.families import torchvision as torchvision_family
from tunelab.models.families import transformers as transformers_family
from tunelab.models.inputs import ImageInput
from tunelab.models.registry import ZooEntry, register_model

if TYPE_CHECKING:
    from torchvision.models import MobileNetV2
    from transformers import BertModel, PreTrainedTokenizerFast

TINY_IMAGE_INPUT = ImageInput(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), size=32, crop_pct=1.0)

WORDS = (  # noqa: SIM905 - a sentence of words reads better than a list of 70 quoted strings
    "the a an and or not is was are be it this that of to in on for with as at by from good bad great "
    "awful fine movie film story plot actor acting fun boring love hate very really quite best worst "
    "john paris london acme corp went visited works lives city company person"
).split()


def tiny_cnn(seed: int = 0) -> MobileNetV2:
    """A 5-block MobileNetV2 (stem, three narrow stages, neck) with random weights."""
    from torchvision.models import MobileNetV2  # lazy: heavy (see the module docstring)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MobileNetV2(
            num_classes=10,
            inverted_residual_setting=[[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 2, 2]],
        )


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """An uncased WordPiece tokenizer over a few dozen words plus single characters (no unknown letters)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors  # lazy: see the module docstring
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = specials + WORDS + chars + [f"##{c}" for c in string.ascii_lowercase + string.digits]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def tiny_bert(seed: int = 0) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """A 2-layer, 32-wide BERT with random weights and its tokenizer."""
    from transformers import BertConfig, BertModel  # lazy: heavy (see the module docstring)

    tokenizer = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertModel(config, add_pooling_layer=False), tokenizer


def _tiny_cnn(pretrained: bool) -> Backbone:
    return torchvision_family.from_torchvision(tiny_cnn(), "tiny-cnn", TINY_IMAGE_INPUT, pretrained=False)


def _tiny_bert(pretrained: bool) -> Backbone:
    net, tokenizer = tiny_bert()
    return transformers_family.from_transformers(net, tokenizer, "tiny-bert", pretrained=False)


RANDOM = "none: random weights, for tests"
register_model(ZooEntry("tiny-cnn", torchvision_family.FAMILY, RANDOM, None, _tiny_cnn))
register_model(ZooEntry("tiny-bert", transformers_family.FAMILY, RANDOM, None, _tiny_bert))
