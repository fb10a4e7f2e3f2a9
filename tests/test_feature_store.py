"""The feature store the runs of a grid share (--feature-store; compare sets <out>/feature-cache).

A run that reads its frozen prefix's features from the store trains bit for bit as one that computes them;
the key changes with everything the features depend on (weights, blocks, preprocessing, batch size, the
examples and their order, a file's size or mtime) and with nothing else (seed, strategy beyond its prefix,
labels); concurrent writers leave one complete entry; a reader never trusts a half-written or damaged one.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from train_fixtures import write_image_folder, write_text_tsv
from tunelab.cli import main
from tunelab.comparison.grid import planned_runs
from tunelab.data.examples import Examples
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.feature_store import STALE_SECONDS, Slot, Stored, load, publish, slot_for
from tunelab.runs.image_size import with_image_size
from tunelab.runs.loaders import example_dataset
from tunelab.runs.prepare import prepare
from tunelab.settings import CompareConfig, TrainConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Separate train and val folders: every seed trains and validates on the same examples."""
    root = tmp_path_factory.mktemp("images")
    return write_image_folder(root / "train", per_class=8), write_image_folder(root / "val", per_class=3, seed=1)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return write_text_tsv(tmp_path_factory.mktemp("text") / "reviews.tsv")


# ---------------------------------------------------------------- a run with the store is the run without it


def train(out: Path, model: str, strategy: str, data: Path, *extra: str) -> None:
    argv = ["train", "--model", model, "--strategy", strategy, "--data", str(data), "--out", str(out)]
    assert main([*argv, "--epochs", "2", "--batch-size", "4", *extra]) == 0


def outcome(run: Path) -> tuple[list[dict], dict[str, torch.Tensor], float]:
    """What a run computed: every epoch's numbers but its time, its trained tensors, its score."""
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]
    tensors, _ = load_tensors(run / "model.safetensors")
    return epochs, tensors, json.loads((run / "summary.json").read_text())["score"]


@pytest.mark.parametrize(("model", "strategy"), [("tiny-cnn", "retrain:2"), ("tiny-bert", "none")])
def test_features_read_from_the_store_train_bit_for_bit_as_computed_ones(
    model, strategy, images, text, tmp_path, capsys
):
    data = ["--val-data", str(images[1])] if model == "tiny-cnn" else ["--val-fraction", "0.25"]
    source = images[0] if model == "tiny-cnn" else text
    store = tmp_path / "store"
    train(tmp_path / "alone", model, strategy, source, *data)
    train(tmp_path / "first", model, strategy, source, *data, "--feature-store", str(store))
    entries = sorted(store.iterdir())
    assert len(entries) == 2 and not [p for p in entries if p.name.startswith(".")]  # train and val, no temp left
    written = {p: (p / "features.npy").stat().st_mtime_ns for p in entries}
    capsys.readouterr()
    train(tmp_path / "second", model, strategy, source, *data, "--feature-store", str(store))
    err = capsys.readouterr().err
    assert "reading cached train features (blocks 0-" in err and "reading cached val features" in err
    assert {p: (p / "features.npy").stat().st_mtime_ns for p in entries} == written  # read, not rewritten

    alone, first, second = (outcome(tmp_path / name) for name in ("alone", "first", "second"))
    for other in (first, second):
        assert other[0] == alone[0]  # every loss, score and lr of every epoch, exactly
        assert other[1].keys() == alone[1].keys()
        assert all(torch.equal(other[1][k], alone[1][k]) for k in alone[1])
        assert other[2] == alone[2]


def test_a_store_that_cannot_be_written_costs_only_the_sharing(images, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder\n")
    train(
        tmp_path / "run", "tiny-cnn", "none", images[0], "--val-data", str(images[1]), "--feature-store", str(blocked)
    )
    assert "tunelab: warning: cannot add features to the store" in capsys.readouterr().err
    assert (tmp_path / "run" / "summary.json").is_file()


def test_a_compare_shares_the_features_of_its_seeds(images, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["compare", "--model", "tiny-cnn", "--data", str(images[0]), "--val-data", str(images[1])]
    assert main([*argv, "--strategies", "none", "--seeds", "2", "--epochs", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("reading cached train features") == 1 and err.count("reading cached val features") == 1
    assert len(list((out / "feature-cache").iterdir())) == 2
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/none/s*/summary.json"))]
    assert len(summaries) == 2 and summaries[1]["cache_seconds"] < summaries[0]["cache_seconds"]


def test_compare_puts_the_store_under_out_unless_given(tmp_path):
    config = CompareConfig(model="tiny-cnn", data="d", out=str(tmp_path / "c"), strategies=("none", "full"), seeds=2)
    assert {run.feature_store for run in planned_runs(config)} == {str(tmp_path / "c" / "feature-cache")}
    given = replace(config, feature_store=str(tmp_path / "shared"))
    assert {run.feature_store for run in planned_runs(given)} == {str(tmp_path / "shared")}
    assert TrainConfig(model="m").feature_store is None  # a run of its own caches its own, as before


# ---------------------------------------------------------------- the key


def slot(plan, examples: Examples, store: Path, stop: int | None = None, **settings) -> Slot:
    config = TrainConfig(model="m", feature_store=str(store), **settings)
    backbone = plan.backbone
    dataset = example_dataset(examples, backbone, False, False, None, config.max_length)
    k = plan.cached_prefix if stop is None else stop
    return slot_for(config, backbone, k, examples, dataset, CPU, main=True)


def image_examples(folder: Path) -> Examples:
    paths = sorted(folder.rglob("*.png"))
    return Examples(paths, [int("red" in p.name) for p in paths], ("blue", "red"), str(folder))


def test_the_key_follows_exactly_what_the_features_depend_on(images, tmp_path):
    folder = write_image_folder(tmp_path / "img", per_class=3)
    examples = image_examples(folder)
    store = tmp_path / "store"
    none = prepare("tiny-cnn", "none", 2)
    key = slot(none, examples, store).key
    assert slot(none, examples, store, seed=3, lr=0.5, epochs=9, strategy="full").key == key  # not in the key
    relabelled = Examples(examples.inputs, [1 - y for y in examples.labels], examples.classes, examples.source)
    assert slot(none, relabelled, store).key == key  # features do not depend on labels
    assert slot(prepare("tiny-cnn", "none", 5), examples, store).key == key  # nor on the head
    assert slot(none, examples, tmp_path / "elsewhere").path.name == key

    changed = {
        "fewer blocks": slot(none, examples, store, stop=2),
        "batch size": slot(none, examples, store, batch_size=8),
        "image size": slot(with_image_size(prepare("tiny-cnn", "none", 2), 48), examples, store),
        "order": slot(none, examples.subset(list(range(len(examples)))[::-1]), store),
        "fewer examples": slot(none, examples.subset(range(len(examples) - 1)), store),
    }
    other = prepare("tiny-cnn", "none", 2)
    with torch.no_grad():
        next(other.backbone.blocks[0].parameters())[0].add_(1e-3)
    changed["weights"] = slot(other, examples, store)
    stat = examples.inputs[0].stat()
    os.utime(examples.inputs[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed["a file's mtime"] = slot(none, examples, store)
    for what, changed_slot in changed.items():
        assert changed_slot.key != key, what
    assert len({s.key for s in changed.values()}) == len(changed)


def test_a_text_key_follows_the_token_limit_and_the_texts(text, tmp_path):
    plan = prepare("tiny-bert", "none", 2)
    examples = Examples(["a good film", "a bad film"], [1, 0], ("neg", "pos"), "t")
    key = slot(plan, examples, tmp_path).key
    assert slot(plan, examples, tmp_path, max_length=8).key != key
    assert slot(plan, Examples(["a good film", "a bad movie"], [1, 0], ("neg", "pos"), "t"), tmp_path).key != key
    assert slot(prepare("tiny-bert", "none", 2), examples, tmp_path).key == key


def test_without_a_store_there_is_no_slot(tmp_path):
    plan = prepare("tiny-cnn", "none", 2)
    examples = image_examples(write_image_folder(tmp_path / "img", per_class=2))
    config = TrainConfig(model="m")
    dataset = example_dataset(examples, plan.backbone, False, False)
    assert slot_for(config, plan.backbone, 3, examples, dataset, CPU, main=True) is None


# ---------------------------------------------------------------- writers and readers


def stored(rows: int = 6, seed: int = 0) -> Stored:
    data = np.random.default_rng(seed).standard_normal((rows, 4, 3, 3)).astype(np.float32)
    return Stored(np.arange(rows + 1, dtype=np.int64), data)


def _publish_at_once(store: str, barrier, results) -> None:
    barrier.wait()
    results.put(publish(Slot(Path(store), "k" * 32, {"made": "by a test"}), stored()))


def test_concurrent_writers_leave_one_complete_entry_and_no_temporary_folder(tmp_path):
    context = multiprocessing.get_context("fork")
    writers = 4
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=_publish_at_once, args=(str(tmp_path), barrier, results)) for _ in range(writers)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    added = sorted(results.get(timeout=5) for _ in range(writers))
    assert added == [False] * (writers - 1) + [True]  # exactly one rename won
    assert [p.name for p in tmp_path.iterdir()] == ["k" * 32]
    found = load(Slot(tmp_path, "k" * 32, {}), examples=6)
    np.testing.assert_array_equal(found.data, stored().data)
    assert json.loads((tmp_path / ("k" * 32) / "key.json").read_text()) == {"made": "by a test"}


def test_a_reader_trusts_only_complete_sound_entries(tmp_path, capsys):
    entry = Slot(tmp_path, "a" * 32, {})
    half = tmp_path / f".{entry.key}.host.1.tmp"  # a writer still at work (or killed): not an entry yet
    half.mkdir()
    np.save(half / "offsets.npy", stored().offsets)
    assert load(entry, examples=6) is None
    assert publish(entry, stored()) and load(entry, examples=6) is not None
    assert half.exists()  # another writer's, and recent: left alone
    assert load(entry, examples=7) is None  # another split's worth of examples: not this entry
    assert "does not hold the features its key names" in capsys.readouterr().err
    (entry.path / "features.npy").write_bytes(b"cut short")
    assert load(entry, examples=6) is None
    assert "is damaged" in capsys.readouterr().err


def test_a_killed_writers_old_temporary_folder_is_removed_by_the_next_writer(tmp_path):
    old = tmp_path / ".dead.host.1.tmp"
    old.mkdir()
    (old / "features.npy").write_bytes(b"x")
    past = time.time() - STALE_SECONDS - 60
    os.utime(old, (past, past))
    assert publish(Slot(tmp_path, "b" * 32, {}), stored())
    assert not old.exists()
    assert not publish(Slot(tmp_path, "b" * 32, {}), stored(seed=1))  # there already: the first stays
    np.testing.assert_array_equal(load(Slot(tmp_path, "b" * 32, {}), 6).data, stored().data)
