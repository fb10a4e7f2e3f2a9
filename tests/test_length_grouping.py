"""Length-grouped training batches (--length-grouping) and the token order of the passes that only measure.

The sampler must keep an epoch an epoch (every example once), depend on (seed, epoch) alone (so a resume
repeats it), and actually group: batches of similar length. Measuring passes (validation, test, eval,
predict) run shortest first and must give back what an unsorted pass gives, in the input order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

import tunelab.runs.epoch as epoch_module
from train_fixtures import write_image_folder
from tunelab.cli import main
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.evaluate import evaluate, predict
from tunelab.runs.loaders import (
    EpochShuffle,
    LengthGroupedShuffle,
    collate_for,
    example_dataset,
    mega_batch_size,
    token_counts,
    token_order,
)
from tunelab.runs.prepare import prepare
from tunelab.settings import TrainConfig, from_yaml_file

WORDS = "good bad film plot story acting fun awful great boring really quite".split()


def synthetic_lengths(n: int, seed: int = 0) -> np.ndarray:
    """A mix of short and long texts, as SST-2 has: most 3-12 tokens, a tail up to 60."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.7, rng.integers(3, 13, n), rng.integers(13, 61, n))


def batches_of(sampler, batch_size: int) -> list[list[int]]:
    """The batches a DataLoader cuts from the sampler's order (drop_last False, as the loop uses it)."""
    return [list(b) for b in BatchSampler(sampler, batch_size, drop_last=False)]


@pytest.mark.parametrize("n, batch_size", [(1000, 16), (37, 4), (5, 8), (64, 16), (1, 1)])
def test_every_example_comes_exactly_once_per_epoch(n, batch_size):
    sampler = LengthGroupedShuffle(synthetic_lengths(n), batch_size, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(n)) and len(sampler) == n
        sizes = [len(b) for b in batches_of(sampler, batch_size)]
        assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size  # one short batch, last


def test_the_order_is_a_function_of_seed_and_epoch_alone():
    lengths = synthetic_lengths(500)
    a, b = LengthGroupedShuffle(lengths, 16, seed=7), LengthGroupedShuffle(lengths, 16, seed=7)
    a.set_epoch(2)
    list(a)  # drawing an epoch changes nothing about the next one: no generator history
    b.set_epoch(2)
    assert list(a) == list(b) == list(a)
    epochs = []
    for epoch in range(4):
        a.set_epoch(epoch)
        epochs.append(list(a))
    assert len({tuple(e) for e in epochs}) == 4  # a new order every epoch
    other = LengthGroupedShuffle(lengths, 16, seed=8)
    assert list(other) != epochs[0]  # and another under another seed


def test_batches_hold_similar_lengths_far_more_than_random_batches():
    lengths = synthetic_lengths(1000)
    grouped = LengthGroupedShuffle(lengths, 16, seed=0)
    shuffled = EpochShuffle(1000, seed=0)

    def spread_and_padding(sampler):
        batches = [lengths[b] for b in batches_of(sampler, 16)]
        spread = np.mean([b.max() - b.min() for b in batches])
        padded = sum(b.max() * len(b) for b in batches)
        return spread, padded

    grouped_spread, grouped_padded = spread_and_padding(grouped)
    random_spread, random_padded = spread_and_padding(shuffled)
    assert grouped_spread < random_spread / 5
    assert grouped_padded < 0.6 * random_padded  # tokens the model runs, padding included
    # the batches' order is shuffled, not long-to-short within each mega-batch as they were cut
    maxima = [lengths[b].max() for b in batches_of(grouped, 16)]
    assert maxima != sorted(maxima, reverse=True)


def test_mega_batches_follow_the_group_by_length_rule():
    assert mega_batch_size(100_000, 16) == 16 * 50
    assert mega_batch_size(1000, 16) == 16 * 15  # at least 4 mega-batches on small data
    assert mega_batch_size(10, 16) == 16


def test_each_process_gets_whole_grouped_batches_and_together_every_example():
    """accelerate shards the BatchSampler's batches: the grouping must survive it."""
    lengths = synthetic_lengths(203)
    sampler = LengthGroupedShuffle(lengths, 8, seed=1)
    sampler.set_epoch(1)
    grouped = {tuple(b) for b in batches_of(sampler, 8)}
    seen = []
    for rank in range(2):
        shard = list(BatchSamplerShard(BatchSampler(sampler, 8, drop_last=False), num_processes=2, process_index=rank))
        assert all(tuple(batch) in grouped for batch in shard[:-1])  # the last may be topped up (even_batches)
        seen += [i for batch in shard for i in batch]
    assert set(seen) == set(range(203))


def test_token_counts_are_what_a_batch_of_one_pads_to():
    backbone = prepare("tiny-bert", "full", 2, task="text-classification").backbone
    from tunelab.data import Examples

    texts = ["good", "a really quite boring and awful film plot", "fun", "the story , the acting and the plot"]
    examples = Examples(texts, [0, 1, 0, 1], ("0", "1"), "test")
    counts = token_counts(examples, backbone)
    dataset, collate = example_dataset(examples, backbone, False, False), collate_for(backbone, None)
    alone = [int(collate([dataset[i]])[0]["input_ids"].shape[1]) for i in range(len(texts))]
    assert counts.tolist() == alone
    assert token_order(examples, backbone).tolist() == list(np.argsort(alone, kind="stable"))
    assert token_counts(examples, prepare("tiny-cnn", "full", 2).backbone) is None  # images have no length


def varied_tsv(path, n: int = 48):
    """Sentences of 1 to 24 words, the label the first word's sentiment: learnable, lengths varied."""
    rng = np.random.default_rng(0)
    rows = ["sentence\tlabel"]
    for i in range(n):
        label = i % 2
        head = "great" if label else "awful"
        rows.append(f"{head} {' '.join(rng.choice(WORDS, int(rng.integers(0, 24))))}\t{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def text_argv(data, out, *extra):
    return [
        "train",
        "--model",
        "tiny-bert",
        "--strategy",
        "full",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--length-grouping",
        *extra,
    ]


def test_resume_with_length_grouping_is_bit_identical(tmp_path, monkeypatch, capsys):
    data = varied_tsv(tmp_path / "t.tsv")
    assert main(text_argv(data, tmp_path / "straight")) == 0

    real_epoch = epoch_module._train_epoch

    def interrupted(*args, **kwargs):
        if args[-2] == 1:  # the epoch index: stop while the second epoch runs
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(epoch_module, "_train_epoch", interrupted)
    assert main(text_argv(data, tmp_path / "resumed")) != 0
    monkeypatch.setattr(epoch_module, "_train_epoch", real_epoch)
    assert main([*text_argv(data, tmp_path / "resumed"), "--resume"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().err

    def metrics(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]

    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "straight")
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_loop_trains_on_grouped_batches(tmp_path, monkeypatch):
    """Through a real run: the padded tokens the model ran per epoch fall with --length-grouping."""
    data = varied_tsv(tmp_path / "t.tsv", n=240)
    padded = {}
    real_backward = epoch_module._backward

    def counting(step, inputs, labels, *args, **kwargs):
        shape = inputs["input_ids"].shape
        padded[key] = padded.get(key, 0) + shape[0] * shape[1]
        return real_backward(step, inputs, labels, *args, **kwargs)

    monkeypatch.setattr(epoch_module, "_backward", counting)
    for key, extra in (("grouped", ()), ("random", ("--no-length-grouping",))):
        argv = [*text_argv(data, tmp_path / key, *extra)]
        argv[argv.index("--epochs") + 1], argv[argv.index("--batch-size") + 1] = "1", "8"
        assert main(argv) == 0
    assert padded["grouped"] < 0.7 * padded["random"], padded


def test_an_image_run_ignores_length_grouping_and_says_so(tmp_path, capsys):
    data = write_image_folder(tmp_path / "img")
    argv = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(data), "--out", str(tmp_path / "run")]
    assert main([*argv, "--epochs", "1", "--length-grouping"]) == 0
    err = capsys.readouterr().err
    assert "tunelab: warning: length_grouping is not applied: images have no length to group by" in err


def test_grouping_is_on_by_default_for_text_and_off_for_images(tmp_path, capsys):
    """Unset, the flag resolves by modality and config.yaml records the value the run used; an image run that
    did not ask for grouping gets no warning about it."""
    text = text_argv(varied_tsv(tmp_path / "t.tsv", n=40), tmp_path / "text")
    text.remove("--length-grouping")
    text[text.index("--epochs") + 1] = "1"
    assert main(text) == 0
    image = ["train", "--model", "tiny-cnn", "--strategy", "none", "--data", str(write_image_folder(tmp_path / "i"))]
    assert main([*image, "--out", str(tmp_path / "image"), "--epochs", "1"]) == 0
    assert "length_grouping" not in capsys.readouterr().err
    assert from_yaml_file(TrainConfig, tmp_path / "text" / "config.yaml").length_grouping is True
    assert from_yaml_file(TrainConfig, tmp_path / "image" / "config.yaml").length_grouping is False


def test_predict_and_eval_in_token_order_answer_in_input_order(tmp_path):
    data = varied_tsv(tmp_path / "t.tsv")
    assert main(text_argv(data, tmp_path / "run")) == 0
    lines = [line.split("\t") for line in data.read_text().splitlines()[1:]]
    texts = [t for t, _ in lines]
    assert list(np.argsort([len(t) for t in texts], kind="stable")) != list(range(len(texts)))  # not sorted already
    together = predict(tmp_path / "run", texts, k=2, batch_size=5)
    alone = [predict(tmp_path / "run", [t], k=2)[0] for t in texts[:3]]
    assert [p.input for p in together] == texts
    for a, b in zip(together, alone):
        assert [c for c, _ in a.labels] == [c for c, _ in b.labels]
        assert [q for _, q in a.labels] == pytest.approx([q for _, q in b.labels], abs=1e-5)
    # eval scores in token order; its accuracy must be what predict's answers (in input order) give
    report = evaluate(tmp_path / "run", data, batch_size=5)
    hits = [p.labels[0][0] == y for p, (_, y) in zip(together, lines)]
    assert report.n == len(texts) and report.accuracy == pytest.approx(sum(hits) / len(hits))


@pytest.mark.slow
def test_two_process_ddp_trains_on_grouped_batches(tmp_path):
    """Two CPU processes (gloo) under accelerate's launcher: each takes whole grouped batches of the epoch."""
    import subprocess
    import sys

    data = varied_tsv(tmp_path / "t.tsv", n=96)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tunelab"]
    proc = subprocess.run([*launch, *text_argv(data, tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 3


def test_grouped_batches_train_under_bf16_autocast(tmp_path):
    """The GPU path's mixed precision on the CPU (accelerate's bf16 autocast): grouped, differently padded
    batches still train to finite losses, and config.yaml records the precision the run used."""
    data = varied_tsv(tmp_path / "t.tsv", n=120)
    argv = text_argv(data, tmp_path / "run", "--mixed-precision", "bf16")
    argv[argv.index("--epochs") + 1] = "2"
    assert main(argv) == 0
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["train_loss"]) and np.isfinite(e["val_loss"]) for e in epochs)
    assert from_yaml_file(TrainConfig, tmp_path / "run" / "config.yaml").mixed_precision == "bf16"
