"""Select on validation, score on a test set: --test-data, --test-fraction, and what summary.json says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from task_fixtures import NER_SENTENCES
from train_fixtures import write_image_folder
from tunelab.cli import main
from tunelab.data.splits import TEST_SEED
from tunelab.errors import DataError, TunelabError
from tunelab.runs.evaluate import evaluate
from tunelab.runs.job import load_job
from tunelab.runs.loaders import load_sets, select_splits, token_counts
from tunelab.runs.loop import train
from tunelab.settings import CompareConfig, TrainConfig

SUMMARY_KEYS = (
    "score",
    "val_score",
    "selected_on",
    "scored_on",
    "eval_examples",
    "test_examples",
    "chance_score",
    "flags",
)


def config(data, out, **kw) -> TrainConfig:
    defaults = dict(model="tiny-cnn", strategy="full", epochs=2, batch_size=8, lr=1e-2, seed=0, val_fraction=0.25)
    return TrainConfig(data=str(data), out=str(out), **{**defaults, **kw})


def write_same_images(root: Path, counts: dict[str, int]) -> Path:
    """Every image identical whatever its class: a model can only predict one class for all of them."""
    pixels = np.full((40, 40, 3), 120, dtype=np.uint8)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")
    return root


def write_reviews(path: Path, n: int = 24) -> Path:
    """A two-class TSV whose every sentence is distinct (so ids and inputs are the same thing), lengths varied."""
    rows = ["sentence\tlabel"]
    for i in range(n):
        words = " ".join(["very"] * (i % 5))
        rows.append(f"{words} good film number {i}\t1" if i % 2 else f"{words} bad film number {i}\t0")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    return write_image_folder(root / "train", per_class=12), write_image_folder(root / "test", per_class=5, seed=1)


# ---------------------------------------------------------------- scored on the test set


def test_with_test_data_the_run_is_scored_once_on_it(pictures, tmp_path, capsys):
    data, test = pictures
    summary = train(config(data, tmp_path / "run", test_data=str(test)))
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert summary["selected_on"] == "validation" and summary["scored_on"] == "test"
    assert summary["test_examples"] == summary["eval_examples"] == 10 and summary["val_examples"] == 6
    assert summary["train_examples"] == 18  # the test folder adds nothing to training
    # the reported score is the best epoch's model on the test folder, exactly what `tunelab eval` measures
    assert summary["score"] == summary["test_metrics"]["accuracy"]
    assert summary["score"] == pytest.approx(evaluate(tmp_path / "run", test).accuracy)
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["val_score"] == max(m["val_accuracy"] for m in epochs)
    assert summary["chance_score"] == 0.5  # 5 blue, 5 red: the majority class is right half the time
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["scored_on"] == "test"
    err = capsys.readouterr().err
    assert f"test accuracy {summary['score']:.4f} on 10 examples" in err
    assert f"best val accuracy {summary['val_score']:.4f} at epoch {summary['best_epoch']}" in err


def test_a_test_set_unlike_validation_scores_differently_and_a_one_class_model_is_flagged(tmp_path, capsys):
    # identical images: the model predicts one class c for all. Validation holds both classes (4 a, 1 b), so
    # its accuracy is 0.8 or 0.2; the test set holds only 'a', so its accuracy is 1 or 0: never the same.
    data = write_same_images(tmp_path / "train", {"a": 15, "b": 5})
    test = write_same_images(tmp_path / "test", {"a": 4})
    summary = train(config(data, tmp_path / "run", test_data=str(test), epochs=1))
    assert summary["val_score"] in (0.8, 0.2) and summary["score"] in (1.0, 0.0)
    assert summary["score"] != summary["val_score"] and summary["scored_on"] == "test"
    assert summary["chance_score"] == 1.0  # always 'a' (the larger training class) is right on every test image
    flags = {f["flag"]: f["message"] for f in summary["flags"]}
    assert set(flags) == {"one-class", "at-chance"}
    assert "for all 4 examples of the test set" in flags["one-class"]
    err = capsys.readouterr().err
    assert err.count("tunelab: warning: ") == 2
    assert f"tunelab: warning: one-class: {flags['one-class']}" in err


def test_without_a_test_set_the_run_is_scored_on_validation_and_says_so(pictures, tmp_path, capsys):
    summary = train(config(pictures[0], tmp_path / "run", strategy="none", epochs=1))
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert summary["scored_on"] == "validation" and summary["test_examples"] == 0
    assert summary["score"] == summary["val_score"] and summary["eval_examples"] == summary["val_examples"] == 6
    assert summary["test_metrics"] is None and summary["chance_score"] == 0.5
    assert "(selected and scored on the same validation set: optimistic)" in capsys.readouterr().err


def test_with_test_fraction_the_run_holds_out_and_is_scored_on_part_of_the_training_data(pictures, tmp_path):
    summary = train(config(pictures[0], tmp_path / "run", test_fraction=0.25, epochs=1))
    assert summary["scored_on"] == "test" and summary["test_examples"] == summary["eval_examples"] == 6
    assert summary["train_examples"] + summary["val_examples"] + summary["test_examples"] == 24
    assert summary["score"] == summary["test_metrics"]["accuracy"]
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "test_fraction: 0.25" in saved  # a run is its settings: the split is part of them


# ---------------------------------------------------------------- the test set is held out, and always the same one


def _sets(task: str, data: Path, **kw):
    cfg = TrainConfig(model="tiny-cnn", data=str(data), **kw)
    splits, test = load_sets(task, cfg)
    splits = select_splits(splits, cfg.folds, cfg.fold, cfg.train_fraction, cfg.seed)
    return splits, test


@pytest.mark.parametrize(
    "settings",
    [
        dict(seed=1),
        dict(seed=2, val_fraction=0.4),
        dict(seed=0, folds=3, fold=2),
        dict(seed=1, folds=3, fold=0, train_fraction=0.5),
        dict(seed=3, train_fraction=0.5),
    ],
)
def test_the_held_out_test_set_is_the_same_for_every_seed_fold_and_fraction(pictures, settings):
    data = pictures[0]
    _, reference = _sets("image-classification", data, test_fraction=0.25, seed=0)
    splits, test = _sets("image-classification", data, test_fraction=0.25, **settings)
    assert test.inputs == reference.inputs and test.labels == reference.labels
    held = set(test.inputs)
    assert held.isdisjoint(splits.train.inputs) and held.isdisjoint(splits.val.inputs)
    assert len(test) == 6 and sorted(test.labels) == [0, 0, 0, 1, 1, 1]  # stratified: a quarter of each class


def test_every_example_is_in_exactly_one_set(pictures):
    splits, test = _sets("image-classification", pictures[0], test_fraction=0.3, seed=5)
    everything = [*splits.train.inputs, *splits.val.inputs, *test.inputs]
    assert len(everything) == len(set(everything)) == 24


def test_the_same_test_set_reaches_every_strategy_and_seed_and_text_is_in_length_order(tmp_path):
    data = write_reviews(tmp_path / "reviews.tsv")
    jobs = [
        load_job(TrainConfig(model="tiny-bert", data=str(data), strategy=strategy, seed=seed, test_fraction=0.25))
        for strategy, seed in (("none", 0), ("full", 1), ("lora", 2))
    ]
    tests = [sorted(job.test.inputs) for job in jobs]
    assert tests[0] == tests[1] == tests[2] and len(tests[0]) == 6
    for job in jobs:
        assert set(job.test.inputs).isdisjoint(job.splits.train.inputs + job.splits.val.inputs)
        lengths = token_counts(job.test, job.plan.backbone).tolist()
        assert lengths == sorted(lengths)  # scored shortest first (in tokens), like validation: the least padding


def test_tagged_sentences_are_held_out_whole(tmp_path):
    path = tmp_path / "ner.txt"
    lines = []
    for i in range(4):
        for words, tags in NER_SENTENCES:
            lines += [f"{w} X X {t}" for w, t in zip(f"{words} s{i}".split(), f"{tags} O".split())] + [""]
    path.write_text("\n".join(lines) + "\n")
    splits, test = _sets("token-classification", path, test_fraction=0.25, seed=0)
    _, again = _sets("token-classification", path, test_fraction=0.25, seed=4)
    keys = [" ".join(words) for words in test.inputs]
    assert keys == [" ".join(words) for words in again.inputs] and len(keys) == 6
    others = {" ".join(words) for words in splits.train.inputs + splits.val.inputs}
    assert others.isdisjoint(keys) and len(others) + len(keys) == 24


def test_the_test_split_does_not_depend_on_the_run_seed_but_on_its_own():
    from tunelab.data.splits import stratified_split

    labels = [0] * 10 + [1] * 10
    rest, test = stratified_split(labels, 0.3, TEST_SEED, keep=2)
    assert len(test) == 6 and set(rest).isdisjoint(test)
    tiny = [0, 0, 1, 1, 1]  # class 0 keeps its two examples for train and validation
    assert all(tiny[i] == 1 for i in stratified_split(tiny, 0.5, TEST_SEED, keep=2)[1])


# ---------------------------------------------------------------- bad settings and bad test data


def test_test_data_and_test_fraction_together_are_refused(pictures, tmp_path, capsys):
    with pytest.raises(TunelabError, match="test_data and test_fraction both given"):
        TrainConfig(model="tiny-cnn", data="x", test_data="y", test_fraction=0.2)
    with pytest.raises(TunelabError, match="test_data and test_fraction both given"):
        CompareConfig(model="tiny-cnn", data="x", test_data="y", test_fraction=0.2)
    for command in ("train", "compare"):
        argv = [command, "--model", "tiny-cnn", "--data", str(pictures[0]), "--out", str(tmp_path / command)]
        assert main([*argv, "--test-data", str(pictures[1]), "--test-fraction", "0.2"]) == 2
        err = capsys.readouterr().err
        assert "test_data and test_fraction both given" in err and err.count("\n") == 1
        assert not (tmp_path / command).exists()


@pytest.mark.parametrize("fraction, message", [("0", "must be in (0, 1)"), ("1", "must be in (0, 1)"), ("1.5", "")])
def test_a_test_fraction_outside_zero_to_one_is_refused(pictures, tmp_path, capsys, fraction, message):
    argv = ["train", "--model", "tiny-cnn", "--data", str(pictures[0]), "--out", str(tmp_path / "run")]
    assert main([*argv, "--test-fraction", fraction]) == 2
    err = capsys.readouterr().err
    assert "test_fraction" in err and message in err and err.count("\n") == 1


def test_a_test_label_unseen_in_training_is_an_error_naming_the_file_and_line(tmp_path, capsys):
    data = write_reviews(tmp_path / "reviews.tsv")
    test = tmp_path / "test.tsv"
    test.write_text("sentence\tlabel\na fine film\t1\nan odd film\t7\n")
    argv = ["train", "--model", "tiny-bert", "--data", str(data), "--out", str(tmp_path / "run")]
    assert main([*argv, "--test-data", str(test)]) == 2
    err = capsys.readouterr().err
    assert f"{test}:3:" in err and "not seen in training" in err


def test_a_test_image_class_unseen_in_training_is_an_error(pictures, tmp_path):
    test = write_image_folder(tmp_path / "test", per_class=2)
    (test / "red").rename(test / "green")
    with pytest.raises(DataError, match="class 'green' is not a training class"):
        _sets("image-classification", pictures[0], test_data=str(test))


def test_the_test_data_may_not_be_the_training_or_validation_data(pictures):
    with pytest.raises(TunelabError, match="test_data is the same path as data"):
        _sets("image-classification", pictures[0], test_data=str(pictures[0]))
    with pytest.raises(TunelabError, match="test_data is the same path as val_data"):
        _sets("image-classification", pictures[0], val_data=str(pictures[1]), test_data=str(pictures[1]))


def test_a_fraction_that_leaves_no_test_example_says_what_to_do(tmp_path):
    data = tmp_path / "small.tsv"
    data.write_text("sentence\tlabel\na\t0\nb\t0\nc\t1\nd\t1\n")
    with pytest.raises(DataError, match="holds out no example"):
        _sets("text-classification", data, test_fraction=0.2)
