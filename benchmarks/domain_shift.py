"""Domain shift: source-only against `--adapt adabn` and `--adapt dann`, on two image pairs and a text (NER) pair.

Each pair is a labelled source domain (`--data`; tunelab holds its own validation split out of it), unlabelled
target-domain examples (`--target-data`) and a labelled target test set (`--test-data`). Each method trains
with the same command but for its --adapt flags, seed by seed; the table gives the target test score (mean ±
sample std over seeds), the source validation score that chose the epoch, and whether the gain over
source-only is larger than the seed spread (the larger of the two methods' stds). Every data file is written
into a temporary folder, never into the repository.

`digits`: UCI digits -> "digits-M". The source domain is scikit-learn's copy of the UCI 8x8 handwritten
digits (1,797 images, 10 classes, white strokes on black), upscaled to 32x32. The target domain is the same
kind of digit made the way Ganin & Lempitsky made MNIST-M from MNIST for the DANN paper (ICML 2015, section
5): each pixel is the absolute difference between the digit and a random 32x32 patch of a colour photograph.
MNIST-M took its patches from BSDS500; here they come from the two photographs scikit-learn ships
(`load_sample_images`: china.jpg, flower.jpg), so nothing is downloaded. It is a synthetic shift, stated as
such: strokes, classes and resolution are the source's; colour, texture and contrast are not. The digits are
split once (seed 0, stratified): 60% are source images, the rest are turned into target images, half of them
unlabelled, half the labelled target test set. No digit appears in two roles. Models: `--models`.

`hymenoptera-c`: clean photos -> the same kind of photos with ImageNet-C's Gaussian noise. The source domain is
the hymenoptera ants/bees photos (/work/shared/datasets/hymenoptera: a small ImageNet subset from PyTorch's
transfer-learning tutorial; see that folder's README for provenance), the target domain the same kind of photo
corrupted as Hendrycks & Dietterich corrupted ImageNet's validation images for ImageNet-C (ICLR 2019): resize the
short side, cut the centre out, add N(0, sigma) to every pixel and channel in [0, 1] and clip, save as JPEG at
quality 85. One corruption at one severity: Gaussian noise at severity 3 of 5 (sigma 0.18; the paper's five
are 0.08, 0.12, 0.18, 0.26, 0.38). Why noise: it is a pure low-level shift (objects, classes, framing unchanged)
whose strength is one published number, and the kind of shift in feature statistics that re-estimating
BatchNorm statistics is meant to correct (Schneider et al., NeurIPS 2020, take ResNet-50's ImageNet-C mean
corruption error from 76.7% to 62.2% that way), so a fair case for adabn; severity 3 is the middle one.
Sets, none sharing a photo with the test: source = the 244 JPEG photos of train/, clean, class folders (the
GIF in train/ants is an "image not found" placeholder and is left out);
unlabelled target = noisy copies of the same train/ photos, in one flat folder, numbered in a shuffled order
(seed 0), so neither a folder nor a name nor the order carries a class; target test = the 153 photos of val/,
noisy, class folders. Every set, the clean source too, is written at 182 x 182 as JPEG quality 85, so the
domains differ by the noise alone. Model: ImageNet MobileNetV2 at 160 px (`--image-size 160`), not its own 224:
time demanded it (a 3-epoch source-only run at 224 px took 7 minutes on the shared machine, load 9; 160 px costs
about half). Its evaluation transform resizes the short side to 160 / 0.875 = 182 and centre-crops 160, which
leaves the written pixels unresampled: ImageNet-C's Resize(256) + CenterCrop(224) scaled by 160/224, the noise
added at the resolution the model reads, as ImageNet-C adds it at 224. The noise of image i of a set comes from
its own generator, seeded by (0, set, i). Strategy full as for digits, no augmentation (a random resized crop
would rescale the noise of the target images DANN reads).

`conll-wnut`: CoNLL-2003 (Reuters news, 2003) -> WNUT-17 (tweets and other user posts, emerging entities),
named-entity recognition with MiniLM-L6 (`--model minilm-l6`, strategy full, `--max-length 64`, tunelab's
default learning rate). A real shift: register, spelling, casing and the entities themselves (WNUT-17's test
entities are rare or new by construction). Files from /work/shared/datasets (see its README for provenance
and licenses: CoNLL-2003's text is Reuters RCV1, WNUT-17 is CC BY 4.0). Source: `--source-sentences`
sentences of CoNLL-2003 train.txt drawn at random (seed 0). Unlabelled target: `--target-sentences` sentences
of WNUT-17's wnut17train.conll (seed 0), its tag column left in place and never read by tunelab. Labelled
target test: `--test-sentences` of emerging.test.annotated (default all 1,287), its entity types mapped to
CoNLL's so that a tagger trained on CoNLL's four types can be scored on it at all:

    person -> PER, location -> LOC, corporation -> ORG, group -> ORG, product -> MISC, creative-work -> MISC

Why these: CoNLL's ORG covers companies as well as teams, bands and other named groups (WNUT's corporation
and group); CoNLL's MISC is its catch-all for every other name, products and titles of works included
(WNUT's product and creative-work). The B-/I- prefixes are kept, so two adjacent entities that map to one
type (a corporation next to a group) stay two entities. The mapping is not exact, and its mismatches count
against the tagger: CoNLL tags nationalities and events as MISC, which WNUT does not annotate (such
predictions are false positives), and WNUT's location includes facilities. adabn does
not apply: MiniLM normalises with LayerNorm and has no BatchNorm layer (tunelab refuses `--adapt adabn` for
it), so the table says so instead of a row of scores. Score: tunelab's token-classification score, entity-level
micro F1 with seqeval's chunk rules; words past 64 sub-tokens count as `O`.

    python benchmarks/domain_shift.py                           # digits, tiny-cnn, 3 seeds
    python benchmarks/domain_shift.py --models tiny-cnn,mobilenet_v2   # also ImageNet MobileNetV2 at 64 px
    python benchmarks/domain_shift.py --pairs hymenoptera-c     # photos -> noisy photos, MobileNetV2, 3 seeds
    python benchmarks/domain_shift.py --pairs conll-wnut        # the NER pair, 3 seeds, 3 epochs
    python benchmarks/domain_shift.py --pairs all --quick       # smoke runs: 1 seed, 1 epoch, little data

Results: a measured pair's table goes to results/domain_shift_<pair>.md, and results/domain_shift.md is
re-assembled from every pair's file, so running one pair keeps the other's rows. `--quick` writes nothing.

Cost (2 cores shared with other benchmarks, so the times are rough). digits (3 seeds): about 6 minutes, nine
tiny-cnn runs of 27-50 s, one thread each, load average 4-6; MobileNetV2 at 64 px costs several times that
per run and was not measured. hymenoptera-c: 37 minutes, nine runs of 167-311 s, load average 6-9; a 224 px
source-only run took 412 s at load 9, which is why the pair runs at 160 px. conll-wnut (1,000 source
sentences): 27 minutes, source-only runs of 182-186 s and dann runs of 345-363 s, one thread each, load
average 5-7.

Needs scikit-learn for the digits pair (the `bench` extra: pip install 'tunelab[bench]'), the hymenoptera
photos in /work/shared/datasets for hymenoptera-c (MobileNetV2's weights are packaged) and the MiniLM-L6
weights in the Hugging Face cache for the text pair. Times depend on the machine's load: the machine these
numbers come from is shared, so read the scores, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATASETS = Path("/work/shared/datasets")
METHODS = {"source-only": [], "adabn": ["--adapt", "adabn"], "dann": ["--adapt", "dann"]}
"""The flags each method adds to the same `tunelab train` command (the target data is added for adabn, dann)."""
MODELS = {"tiny-cnn": ["--image-size", "32", "--lr", "3e-3"], "mobilenet_v2": ["--image-size", "64"]}
"""Image models measured, with their own flags: tiny-cnn (random weights) at its 32 px, ImageNet MobileNetV2 at 64 px."""
TEXT_MODELS = {"minilm-l6": ["--max-length", "64"]}
"""The text pair's model: MiniLM-L6, each sentence cut to 64 sub-tokens."""
SIDE = 32
"""Side of the written images (the 8x8 digits upscaled), and of the photo patches."""
WNUT_TO_CONLL = {
    "person": "PER",
    "location": "LOC",
    "corporation": "ORG",
    "group": "ORG",
    "product": "MISC",
    "creative-work": "MISC",
}
"""WNUT-17's entity types as CoNLL-2003's, so a CoNLL-trained tagger can be scored on WNUT (module docstring)."""
HYMENOPTERA = DATASETS / "hymenoptera"
"""The ants/bees photos: train/ and val/, each with ants/ and bees/ class folders."""
PHOTO_SIZE = 160
"""The side hymenoptera-c's model sees: MobileNetV2 at 160 px, not its own 224 (a 3-epoch source-only run at
224 px took 7 minutes on the shared machine; 160 px costs about half)."""
HYMENOPTERA_MODELS = {"mobilenet_v2": ["--image-size", str(PHOTO_SIZE)]}
"""hymenoptera-c's model: ImageNet MobileNetV2 at PHOTO_SIZE."""
PHOTO_SIDE = math.floor(PHOTO_SIZE / 0.875)
"""Side of the written photos (182): the short side MobileNetV2's evaluation transform resizes to (size / crop_pct
0.875) before it centre-crops PHOTO_SIZE, so the model sees the written pixels unresampled: ImageNet-C's
Resize(256) + CenterCrop(224), scaled by 160/224."""
NOISE_SIGMA = 0.18
"""ImageNet-C's Gaussian noise at severity 3 of 5 (std of the noise on pixels in [0, 1]; the five are
0.08, 0.12, 0.18, 0.26, 0.38)."""
JPEG_QUALITY = 85
"""ImageNet-C saved its corrupted images as JPEG at quality 85; every set here is saved the same way."""
METRIC_NAMES = {"accuracy": "accuracy", "entity_f1": "entity F1"}
"""How a summary's `metric` is written in the table's header."""


def digits_pair(folder: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Write source/, target-unlabelled/, target-test/ image trees under `folder`; returns their paths."""
    from sklearn.datasets import load_digits, load_sample_images
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target
    index = np.arange(len(labels))
    if args.quick:
        index = train_test_split(index, train_size=200, stratify=labels, random_state=0)[0]
    source, target = train_test_split(index, train_size=0.6, stratify=labels[index], random_state=0)
    unlabelled, test = train_test_split(target, train_size=0.5, stratify=labels[target], random_state=0)
    photos = [np.asarray(p, dtype=np.float32) for p in load_sample_images().images]
    rng = np.random.default_rng(0)
    paths = {}
    for name, chosen, shifted in (
        ("source", source, False),
        ("target-unlabelled", unlabelled, True),
        ("target-test", test, True),
    ):
        root = folder / name
        for i in chosen:
            digit = np.asarray(Image.fromarray((images[i] * 255).astype(np.uint8)).resize((SIDE, SIDE), Image.BILINEAR))
            pixels = np.repeat(digit[..., None].astype(np.float32), 3, axis=2)
            if shifted:  # MNIST-M's recipe: |photo patch - digit|, per channel
                photo = photos[rng.integers(len(photos))]
                y, x = rng.integers(photo.shape[0] - SIDE), rng.integers(photo.shape[1] - SIDE)
                pixels = np.abs(photo[y : y + SIDE, x : x + SIDE] - pixels)
            out = root / str(labels[i]) / f"{i:04d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(out)
        paths[name] = root
    return paths


def count_images(path: Path) -> int:
    return len(list(path.glob("*/*.png")))


def photo_view(path: Path, side: int = PHOTO_SIDE) -> np.ndarray:
    """The photo as ImageNet-C prepares it before corrupting: RGB, short side resized to `side`, the centre
    `side` x `side` square cut out (uint8, side x side x 3)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = side / min(image.size)
        width, height = max(side, round(image.width * scale)), max(side, round(image.height * scale))
        image = image.resize((width, height), Image.BILINEAR)
        left, top = (width - side) // 2, (height - side) // 2
        return np.asarray(image.crop((left, top, left + side, top + side)))


def gaussian_noise(pixels: np.ndarray, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """ImageNet-C's Gaussian noise: on pixels scaled to [0, 1], add N(0, sigma) per pixel and channel, clip."""
    noisy = pixels.astype(np.float64) / 255.0 + rng.normal(scale=sigma, size=pixels.shape)
    return np.round(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)


def photos(root: Path) -> list[tuple[str, Path]]:
    """(class, path) of every JPEG photo under `root`'s class folders, sorted. The one GIF in hymenoptera's
    train/ants is a placeholder picture ("image not found", not an ant), so only .jpg and .jpeg are taken."""
    return [
        (folder.name, path)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in (".jpg", ".jpeg")
    ]


def write_hymenoptera_c(root: Path, folder: Path, seed: int = 0, per_class: int | None = None) -> dict[str, Path]:
    """Write source/ (root/train clean, class folders), target-unlabelled/ (root/train corrupted, one flat folder,
    files numbered in a shuffled order: no class in any name or position) and target-test/ (root/val corrupted,
    class folders) under `folder`. The noise of image i of a set is drawn from (seed, set, i): the same seed
    writes the same pixels. `per_class`: keep only the first that many photos of each class (quick runs, tests)."""

    def chosen(split: str) -> list[tuple[str, Path]]:
        found = photos(root / split)
        if per_class is None:
            return found
        return [item for c in sorted({c for c, _ in found}) for item in [x for x in found if x[0] == c][:per_class]]

    train, val = chosen("train"), chosen("val")
    shuffled = np.random.default_rng(seed).permutation(len(train))
    jobs = [("source", i, p, False, Path(c) / p.name) for i, (c, p) in enumerate(train)]
    jobs += [("target-unlabelled", i, train[j][1], True, Path(f"{i:04d}.jpg")) for i, j in enumerate(shuffled)]
    jobs += [("target-test", i, p, True, Path(c) / p.name) for i, (c, p) in enumerate(val)]
    sets = {"source": 0, "target-unlabelled": 1, "target-test": 2}
    for name, i, path, corrupt, relative in jobs:
        pixels = photo_view(path)
        if corrupt:
            pixels = gaussian_noise(pixels, np.random.default_rng([seed, sets[name], i]))
        out = (folder / name / relative).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out, quality=JPEG_QUALITY)
    return {name: folder / name for name in sets}


def hymenoptera_c_pair(folder: Path, args: argparse.Namespace) -> dict[str, Path]:
    """hymenoptera -> hymenoptera-C (Gaussian noise, severity 3) under `folder`; 8 photos a class with --quick."""
    return write_hymenoptera_c(HYMENOPTERA, folder, seed=0, per_class=8 if args.quick else None)


def count_photos(path: Path) -> int:
    return len(list(path.rglob("*.jpg")))


def read_sentences(path: Path) -> list[list[list[str]]]:
    """A CoNLL-style file's sentences, each a list of its token lines split into fields. -DOCSTART- lines and
    blank or whitespace-only lines (WNUT-17's train file breaks sentences with a lone TAB) end a sentence."""
    sentences: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if fields and fields[0] != "-DOCSTART-":
            current.append(fields)
        elif current:
            sentences.append(current)
            current = []
    return sentences


def sample(sentences: list, size: int | None, what: str) -> list:
    """`size` sentences drawn at random (seed 0), in file order; all of them when size is None."""
    if size is None or size == len(sentences):
        return sentences
    if not 2 <= size <= len(sentences):
        raise SystemExit(f"domain_shift: {what} asks for {size} sentences; give 2 to {len(sentences)}")
    chosen = np.random.default_rng(0).choice(len(sentences), size=size, replace=False)
    return [sentences[i] for i in sorted(chosen)]


def write_sentences(path: Path, sentences: list[list[list[str]]]) -> Path:
    """One token line per word (fields joined by a space: no token holds whitespace), a blank line after each sentence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n".join(" ".join(f) for f in s) + "\n\n" for s in sentences), encoding="utf-8")
    return path


def to_conll_types(sentence: list[list[str]]) -> list[list[str]]:
    """A WNUT-17 sentence with its entity types as CoNLL's (WNUT_TO_CONLL), B-/I- prefixes kept."""
    return [[*f[:-1], f[-1] if f[-1] == "O" else f"{f[-1][:2]}{WNUT_TO_CONLL[f[-1][2:]]}"] for f in sentence]


def entity_types(sentences: list[list[list[str]]]) -> set[str]:
    return {f[-1][2:] for s in sentences for f in s if f[-1] != "O"}


def conll_wnut_pair(folder: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Write source.txt (CoNLL-2003 subset), target-unlabelled.conll (WNUT-17 train subset, tags unread) and
    target-test.txt (WNUT-17 test with CoNLL's types) under `folder`; returns their paths."""
    sizes = (100, 50, 50) if args.quick else (args.source_sentences, args.target_sentences, args.test_sentences)
    source = sample(read_sentences(DATASETS / "conll2003" / "train.txt"), sizes[0], "--source-sentences")
    target = sample(read_sentences(DATASETS / "wnut17" / "wnut17train.conll"), sizes[1], "--target-sentences")
    test = sample(read_sentences(DATASETS / "wnut17" / "emerging.test.annotated"), sizes[2], "--test-sentences")
    test = [to_conll_types(s) for s in test]
    missing = entity_types(test) - entity_types(source)
    if missing:  # tunelab refuses a test tag the training data never had
        raise SystemExit(
            f"domain_shift: the source sample has no {', '.join(sorted(missing))} entity; give more --source-sentences"
        )
    return {
        "source": write_sentences(folder / "source.txt", source),
        "target-unlabelled": write_sentences(folder / "target-unlabelled.conll", target),
        "target-test": write_sentences(folder / "target-test.txt", test),
    }


def count_sentences(path: Path) -> int:
    return len(read_sentences(path))


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def digits_caption(counts: dict[str, int], epochs: int, seeds: int) -> str:
    return (
        f"UCI digits (source, {counts['source']} images, white on black) -> digits-M (target: MNIST-M's recipe with "
        f"scikit-learn's two sample photos; {counts['target-unlabelled']} unlabelled for adaptation, "
        f"{counts['target-test']} labelled for the test). Strategy full, {plural(epochs, 'epoch')}, batch 32, no "
        f"augmentation, {plural(seeds, 'seed')} (mean ± sample std). The epoch is chosen on the source validation "
        "split; the target test set scores it once (10 classes: chance 0.10). Gain > seed spread: |gain| larger "
        "than the larger of the two methods' seed stds: a rough guide with this few seeds, not a test."
    )


def hymenoptera_c_caption(counts: dict[str, int], epochs: int, seeds: int) -> str:
    return (
        f"hymenoptera ants/bees photos (source: the {counts['source']} JPEG photos of train/, clean; tunelab holds 20% "
        "out for validation) -> hymenoptera-C (target: ImageNet-C's Gaussian noise at severity 3 of 5, sigma 0.18 on "
        f"[0, 1] pixels; {counts['target-unlabelled']} noisy copies of the train/ photos, unlabelled, in one flat "
        f"folder for adaptation; the {counts['target-test']} photos of val/, noisy and labelled, for the test). Every "
        f"photo resized to a {PHOTO_SIDE} px short side and centre-cropped as ImageNet-C does (at 160/224 of its "
        "scale), corrupted at that size and saved as JPEG quality 85 (clean ones too). MobileNetV2 (ImageNet "
        f"weights) at {PHOTO_SIZE} px, strategy full, tunelab's "
        f"default lr (head 1e-3, backbone 1e-4), {plural(epochs, 'epoch')}, batch 32, no augmentation, "
        f"{plural(seeds, 'seed')} (mean ± sample std). The epoch is chosen on the clean source validation split; "
        "the noisy val/ photos score it once (70 ants, 83 bees: always answering bees scores 0.54). Gain "
        "> seed spread: |gain| larger than the larger of the two methods' seed stds."
    )


def conll_wnut_caption(counts: dict[str, int], epochs: int, seeds: int) -> str:
    return (
        f"CoNLL-2003 news (source: {counts['source']} training sentences drawn with seed 0; tunelab holds 20% of them "
        f"out for validation) -> WNUT-17 tweets (target: {counts['target-unlabelled']} unlabelled sentences of its "
        f"train file for adaptation, tags not read; {counts['target-test']} sentences of emerging.test.annotated for "
        "the test, entity types mapped to CoNLL's: person->PER, location->LOC, corporation and group->ORG, product "
        "and creative-work->MISC). Named-entity recognition, strategy full, --max-length 64, tunelab's default lr "
        f"(head 1e-3, backbone 1e-4), {plural(epochs, 'epoch')}, batch 32, {plural(seeds, 'seed')} (mean ± sample "
        "std). The epoch is chosen on the source validation entity F1; the WNUT test set scores it once "
        "(entity-level micro F1, seqeval's chunk rules). Gain > seed spread: |gain| larger than the larger of the "
        "two methods' seed stds."
    )


@dataclass(frozen=True)
class Pair:
    """One source -> target shift: how its data is written, what trains on it, how its table is captioned."""

    name: str
    title: str
    write: Callable[[Path, argparse.Namespace], dict[str, Path]]
    count: Callable[[Path], int]
    models: Callable[[argparse.Namespace], dict[str, list[str]]]
    not_applicable: dict[str, str]
    """Methods that cannot run on this pair, with the reason the table gives."""
    flags: list[str]
    seeds: int
    epochs: int
    caption: Callable[[dict[str, int], int, int], str]


PAIRS = {
    "digits": Pair(
        name="digits",
        title="UCI digits -> digits-M (images)",
        write=digits_pair,
        count=count_images,
        models=lambda args: {m: MODELS[m] for m in args.models.split(",")},
        not_applicable={},
        flags=["--no-augment", "--batch-size", "32"],
        seeds=3,
        epochs=8,
        caption=digits_caption,
    ),
    "hymenoptera-c": Pair(
        name="hymenoptera-c",
        title="hymenoptera -> hymenoptera-C, Gaussian noise (images)",
        write=hymenoptera_c_pair,
        count=count_photos,
        models=lambda args: HYMENOPTERA_MODELS,
        not_applicable={},
        flags=["--no-augment", "--batch-size", "32"],
        seeds=3,
        epochs=3,
        caption=hymenoptera_c_caption,
    ),
    "conll-wnut": Pair(
        name="conll-wnut",
        title="CoNLL-2003 -> WNUT-17 (named-entity recognition)",
        write=conll_wnut_pair,
        count=count_sentences,
        models=lambda args: TEXT_MODELS,
        not_applicable={"adabn": "not run: MiniLM has no BatchNorm (LayerNorm only), tunelab refuses --adapt adabn"},
        flags=["--task", "token-classification", "--batch-size", "32"],
        seeds=3,
        epochs=3,
        caption=conll_wnut_caption,
    ),
}


def run(command: list[str], label: str, out: Path) -> tuple[dict, float]:
    """One `tunelab train` process; returns its summary and its wall-clock seconds."""
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tunelab", "train", *command, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise RuntimeError(f"{label} failed")
    summary = json.loads((out / "summary.json").read_text())
    seconds = time.perf_counter() - started
    print(
        f"  {label}: target test {summary['score']:.3f}, source val {summary['val_score']:.3f} ({seconds:.0f}s)",
        flush=True,
    )
    return summary, seconds


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(pair: Pair, results: dict, seeds: int, caption: str, load: tuple[float, float]) -> str:
    """The pair's markdown: caption, one row per (model, method), the load the runs shared the machine with."""
    metric = next(iter(next(iter(results.values())).values()))[0]["metric"]
    name = METRIC_NAMES.get(metric, metric)
    lines = [
        f"| Model | Method | Target test {name} | Source val {name} | Gain vs source-only | Gain > seed spread? |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for model, by_method in results.items():
        base_mean, base_std = mean_std([s["score"] for s in by_method["source-only"]])
        for method in METHODS:
            if method in pair.not_applicable:
                lines.append(f"| {model} | {method} | {pair.not_applicable[method]} | — | — | — |")
                continue
            summaries = by_method[method]
            mean, std = mean_std([s["score"] for s in summaries])
            val_mean, val_std = mean_std([s["val_score"] for s in summaries])
            if method == "source-only":
                gain, verdict = "—", "—"
            else:
                spread = max(std, base_std)
                gain = f"{mean - base_mean:+.3f}"
                verdict = "yes" if abs(mean - base_mean) > spread and seeds > 1 else "no"
            lines.append(
                f"| {model} | {method} | {mean:.3f} ± {std:.3f} | {val_mean:.3f} ± {val_std:.3f} | {gain} | {verdict} |"
            )
    return "\n".join(
        [
            caption,
            "",
            *lines,
            "",
            f"Measured on a shared machine ({os.cpu_count()} cores, 1-minute load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end): the scores are what the runs measured; times are not reported.",
        ]
    )


def measure(pair: Pair, args: argparse.Namespace, folder: Path) -> str:
    """Write the pair's data, train every (model, seed, method), return its table."""
    seeds = 1 if args.quick else (args.seeds or pair.seeds)
    epochs = 1 if args.quick else (args.epochs or pair.epochs)
    load_before = os.getloadavg()[0]
    data = pair.write(folder / "data", args)
    counts = {name: pair.count(path) for name, path in data.items()}
    print(f"{pair.name} data: {counts}", flush=True)
    results: dict = {}
    for model, model_flags in pair.models(args).items():
        results[model] = {m: [] for m in METHODS if m not in pair.not_applicable}
        for seed in range(seeds):
            for method in results[model]:
                command = ["--model", model, "--strategy", "full", "--data", str(data["source"])]
                command += ["--test-data", str(data["target-test"]), "--epochs", str(epochs), "--seed", str(seed)]
                command += pair.flags + model_flags + METHODS[method]
                if METHODS[method]:
                    command += ["--target-data", str(data["target-unlabelled"])]
                out = folder / "runs" / model / method / f"s{seed}"
                summary, seconds = run(command, f"{model} {method} seed {seed}", out)
                if args.quick:
                    print(f"    {seconds / (counts['source'] * epochs):.3f}s per source example per epoch", flush=True)
                results[model][method].append(summary)
    caption = pair.caption(counts, epochs, seeds)
    return table(pair, results, seeds, caption, (load_before, os.getloadavg()[0]))


def assemble() -> str:
    """results/domain_shift.md from every pair's own file, in PAIRS order; a pair not yet measured says how."""
    parts = ["# Domain shift: source-only against --adapt adabn and --adapt dann", ""]
    parts += ["Written by `benchmarks/domain_shift.py` from the per-pair files `domain_shift_<pair>.md`.", ""]
    for pair in PAIRS.values():
        own = RESULTS / f"domain_shift_{pair.name}.md"
        body = (
            own.read_text().strip()
            if own.exists()
            else (f"Not measured yet: `python benchmarks/domain_shift.py --pairs {pair.name}`.")
        )
        parts += [f"## {pair.title}", "", body, ""]
    text = "\n".join(parts)
    (RESULTS / "domain_shift.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 1 epoch; 200 digits, 8 photos a class, 100/50/50 sentences; no results file",
    )
    parser.add_argument(
        "--pairs", default="digits", help=f"comma-separated, from {', '.join(PAIRS)}, or all (default: digits)"
    )
    parser.add_argument("--seeds", type=int, help="default: the pair's own (3 each)")
    parser.add_argument("--epochs", type=int, help="default: the pair's own (digits 8, hymenoptera-c 3, conll-wnut 3)")
    parser.add_argument("--models", default="tiny-cnn", help=f"digits pair: comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--source-sentences", type=int, default=1000, help="conll-wnut: CoNLL-2003 train sentences")
    parser.add_argument(
        "--target-sentences", type=int, default=1000, help="conll-wnut: unlabelled WNUT-17 train sentences"
    )
    parser.add_argument("--test-sentences", type=int, help="conll-wnut: WNUT-17 test sentences (default: all 1287)")
    args = parser.parse_args()
    names = list(PAIRS) if args.pairs == "all" else args.pairs.split(",")
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        parser.error(f"--pairs: unknown pair {', '.join(unknown)}; choose from {', '.join(PAIRS)} or all")
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"domain-shift-{name}-") as tmp:
            text = measure(PAIRS[name], args, Path(tmp))
        print(text, flush=True)
        if not args.quick:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"domain_shift_{name}.md").write_text(text + "\n")
            assemble()


if __name__ == "__main__":
    main()
