"""Everything advise measures: the data's profile, frozen features, LogME per block, the random-init control.

This is the half of advise that touches models and data; `tunelab.advice.decide` is the rule applied to
what it returns (`Measurements`). The cost is one forward pass of the pretrained model over a sample of
`max_examples` (400) and one of the random-init control over `control_examples` (200) of them: sized so
that advice costs at most a quarter of one 3-epoch `full` run of 1000 examples (benchmarks/README.md,
advisor section; at 1000 and 1000, SST-2's advice took 0.36 of it, mostly the forward passes).

No list of strategies or tasks is written here: the candidates whose sizes are measured (for budgets)
are the registered strategies (`tunelab.strategies.REGISTRY`), each at its defaults except retrain, which
is sized at the K the rule will pick; which of them are parameter-efficient is read off their plans; the
tasks advise accepts are the task registry's single-label ones (`tunelab.tasks.single_label_tasks`).

May import: tunelab.advice.decide / profile / transferability, tunelab.runs, tunelab.tasks, tunelab.data,
tunelab.strategies, tunelab.models, tunelab.settings, tunelab.errors, numpy and torch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from tunelab.advice.decide import Evidence, Measurements, retrain_depths
from tunelab.advice.profile import flat_labels, profile, stratified_sample
from tunelab.advice.transferability import feature_stat_distance, logme, nearest_centroid_accuracy, probe_accuracy
from tunelab.data.examples import Examples
from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.models.zoo import load_backbone
from tunelab.runs.features import extract_many, extract_token_rows
from tunelab.runs.image_size import sized
from tunelab.runs.loaders import infer_task, load_splits
from tunelab.runs.prepare import shape
from tunelab.settings import AdviseConfig
from tunelab.strategies import REGISTRY, Plan
from tunelab.tasks import check_modality, single_label_tasks

VAL_FRACTION = 0.2
"""Held out when no validation data is given; advise pools train and val again, so it changes nothing measured."""


TOKEN_TASK = "token-classification"
"""The one task measured per word rather than per example (`runs.features.extract_token_rows`)."""
MAX_ROWS = 2000
"""Tagged words the token-classification measurements use at most (a stratified sample of the rows).
Sentences are sampled only until their words reach this with a margin (`ROW_MARGIN`), not `max_examples`
of them: on CoNLL-2003 the 1000 sentences held 14,000 words, and reading them all was most of the cost."""
ROW_MARGIN = 1.25
"""Words sampled per word kept: room for the words `max_length` cuts off and for the stratification."""


def supported_tasks() -> tuple[str, ...]:
    """The tasks advise measures: every single-label task, and token classification (one row per word)."""
    return (*single_label_tasks(), TOKEN_TASK)


def measure(
    model: str,
    data: str,
    val_data: str | None = None,
    task: str = AdviseConfig.task,
    max_examples: int = AdviseConfig.max_examples,
    seed: int = AdviseConfig.seed,
    *,
    control_examples: int = AdviseConfig.control_examples,
    batch_size: int = AdviseConfig.batch_size,
    max_length: int | None = None,
    text_column: str | None = None,
    label_column: str = AdviseConfig.label_column,
    image_size: int | None = None,
    size_candidates: bool = True,
    progress: bool = True,
) -> Measurements:
    """Profile `data`, extract `model`'s features on a stratified sample, and score them (see `advise`).

    `image_size` is the side of the images the model sees, as in training (None: the model's own).
    `size_candidates` counts every candidate's trainable parameters and memory (what a budget is checked
    against): a fifth of the measurement's time, so `advise` skips it when no budget is given.
    Retrain's K is chosen by `decide` among the depths `retrain_depths` lists, so every one of them is sized.
    Both sample sizes are raised to 4 examples a class where they are smaller, so a probe has some of each
    class in every fold. For token classification the sample is sentences, until their words reach
    MAX_ROWS (with `ROW_MARGIN`), and the control runs on all of them.
    """
    started = time.perf_counter()
    task = infer_task(data, task)
    if task not in supported_tasks():
        raise TunelabError(f"advise does not support task '{task}'; valid: {', '.join(supported_tasks())}")
    splits = load_splits(task, data, val_data, VAL_FRACTION, seed, text_column, label_column)
    train, val = splits.train, splits.val
    pool = Examples(train.inputs + val.inputs, train.labels + val.labels, train.classes, train.source)
    _check_data(pool, task)
    num_classes = len(pool.classes)
    # Small or large is about what the strategy will be fitted on: with separate val data, the training
    # data alone (the validation set only measures); without, all of it (the user's own split comes later).
    data_profile = profile(train if val_data is not None else pool, seed=seed)
    loader_args = (batch_size, max_length, progress)
    models = _models(model, task, image_size, seed)
    if task == TOKEN_TASK:
        index = _sentences(pool.labels, max_examples, seed)
        rows = _token_rows(models, pool.subset(index), loader_args, seed)
    else:
        floor = 4 * num_classes
        index = stratified_sample(pool.labels, max(max_examples, floor), seed)
        rows = _features(models, pool.subset(index), max(control_examples, floor), loader_args, seed)
    per_block, labels, control, both = rows.per_block, rows.labels, rows.control, rows.both

    pretrained, common = per_block[-1][both], labels[both]
    probe_per_block = [probe_accuracy(f, labels, seed=seed) for f in per_block]
    on_all_rows = len(both) == len(labels)
    halves = _halves(common, seed)
    gains = [logme(pretrained[h], common[h], num_classes) - logme(control[h], common[h], num_classes) for h in halves]
    shift = halves_shift = None
    from_val = np.asarray(index) >= len(train)
    if task != TOKEN_TASK and val_data is not None and from_val.sum() >= 2 and (~from_val).sum() >= 4:
        train_rows = per_block[-1][~from_val]
        a, b = _halves(labels[~from_val], seed)
        shift = feature_stat_distance(train_rows, per_block[-1][from_val])
        halves_shift = feature_stat_distance(train_rows[a], train_rows[b])
    params, memory, efficient = candidates(models[0], num_classes, task) if size_candidates else ({}, {}, ())
    evidence = Evidence(
        sample_size=len(index),
        pool_size=len(pool),
        control_size=len(both),
        block_names=rows.block_names,
        logme_pretrained=logme(pretrained, common, num_classes),
        logme_control=logme(control, common, num_classes),
        logme_gain_noise=abs(gains[0] - gains[1]) / 2,
        logme_per_block=[logme(f, labels, num_classes) for f in per_block],
        nearest_centroid_pretrained=nearest_centroid_accuracy(pretrained, common, seed=seed),
        nearest_centroid_control=nearest_centroid_accuracy(control, common, seed=seed),
        chance_accuracy=float(np.bincount(common).max() / len(common)),
        trainable_params=params,
        memory_mb=memory,
        train_val_shift=shift,
        train_halves_shift=halves_shift,
        probe_per_block=probe_per_block,
        probe_control=probe_accuracy(control, common, seed=seed),
        probe_pretrained=probe_per_block[-1] if on_all_rows else probe_accuracy(pretrained, common, seed=seed),
        rows=len(labels),
    )
    return Measurements(
        model=model,
        data=str(data),
        task=task,
        profile=data_profile,
        evidence=evidence,
        parameter_efficient=efficient,
        seconds_features=rows.seconds,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class _Rows:
    """Feature rows of the measured sample: one per example, or one per tagged word for token classification."""

    per_block: list[np.ndarray]
    """The pretrained model's rows after each block."""
    labels: np.ndarray
    """The label of each row."""
    control: np.ndarray
    """The random-init control's last-block rows, for the rows `both` only."""
    both: np.ndarray
    """Indices of the rows the control ran on."""
    block_names: list[str]
    seconds: float


def _check_data(pool: Examples, task: str) -> None:
    if len(pool.classes) < 2:
        found = f"{len(pool.classes)} class ({', '.join(pool.classes)})"
        raise TunelabError(f"{pool.source}: found {found}; advice needs at least 2 classes")
    counts = np.bincount(flat_labels(pool.labels), minlength=len(pool.classes))
    if task == TOKEN_TASK:  # tags the data never uses are no class to learn; two tags used are the minimum
        if np.count_nonzero(counts) < 2:
            raise TunelabError(f"{pool.source}: every word has the same tag; advice needs at least 2 tags in use")
        return
    for name, count in zip(pool.classes, counts):
        if count < 2:
            raise TunelabError(f"{pool.source}: class '{name}' has {count} example(s); advice needs 2 or more")


def _halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two stratified halves as boolean masks: their disagreement is the noise of a LogME difference."""
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        first[members[::2]] = True
    return first, ~first


def _sentences(tags: list[list[int]], max_sentences: int, seed: int) -> list[int]:
    """Sorted indices of randomly drawn sentences, until their words reach MAX_ROWS * ROW_MARGIN (or
    `max_sentences` are drawn): as many as the measurement keeps, not every sentence of the sample."""
    order = np.random.default_rng(seed).permutation(len(tags))[:max_sentences]
    words = np.cumsum([len(tags[i]) for i in order])
    enough = int(np.searchsorted(words, MAX_ROWS * ROW_MARGIN)) + 1
    return sorted(order[:enough].tolist())


def _models(model: str, task: str, image_size: int | None, seed: int):
    """The pretrained backbone and its random-init control (the same architecture, seeded), at `image_size`."""
    pretrained = sized(load_backbone(model, pretrained=True), image_size)
    check_modality(task, pretrained)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        control = sized(load_backbone(model, pretrained=False), image_size)
    return pretrained, control


def _features(models: tuple, sample: Examples, control_examples: int, loader_args: tuple, seed: int) -> _Rows:
    """Pretrained features at every block on the sample, and the random-init control's last block on a part.

    The control runs on a stratified `control_examples` part of the sample only (all of it when the
    sample is no larger), to save time; that part is read once for both models.
    """
    pretrained, control = models
    blocks = list(range(len(pretrained.blocks)))
    both = stratified_sample(sample.labels, control_examples, seed)
    rest = sorted(set(range(len(sample))) - set(both))
    started = time.perf_counter()
    shared, controlled = extract_many([(pretrained, blocks), (control, None)], sample.subset(both), *loader_args)
    if rest:
        more = extract_many([(pretrained, blocks)], sample.subset(rest), *loader_args)[0]
        order = np.argsort(both + rest)
        per_block = [np.concatenate([shared[i], more[i]])[order] for i in blocks]
    else:
        per_block = [shared[i] for i in blocks]
    seconds = time.perf_counter() - started
    labels = np.asarray(sample.labels, dtype=np.int64)
    return _Rows(per_block, labels, controlled[blocks[-1]], np.asarray(both), list(pretrained.block_names), seconds)


def _token_rows(models: tuple, sample: Examples, loader_args: tuple, seed: int) -> _Rows:
    """Both models' rows of every tagged word of the sampled sentences, then at most MAX_ROWS of them, stratified."""
    pretrained, control = models
    blocks = list(range(len(pretrained.blocks)))
    started = time.perf_counter()
    (features, controlled), labels = extract_token_rows([(pretrained, blocks), (control, None)], sample, *loader_args)
    seconds = time.perf_counter() - started
    keep = np.asarray(stratified_sample(labels.tolist(), MAX_ROWS, seed))
    per_block = [features[i][keep] for i in blocks]
    return _Rows(per_block, labels[keep], controlled[blocks[-1]][keep], np.arange(len(keep)),
                 list(pretrained.block_names), seconds)  # fmt: skip


def candidate_specs(blocks: int) -> list[str]:
    """Every registered strategy at its defaults, in registry order; retrain at each of `retrain_depths`."""
    specs = []
    for key in REGISTRY:
        specs += [f"{key}:{k}" for k in retrain_depths(blocks)] if key == "retrain" else [key]
    return specs


def candidates(
    backbone: Backbone, num_classes: int, task: str | None = None
) -> tuple[dict[str, int], dict[str, float], tuple[str, ...]]:
    """Trainable parameters, training memory (fp32 weights + grads + AdamW moments) and the parameter-efficient ones.

    Each candidate is applied to a copy of the loaded `backbone`: one load for all of them, not one each.
    """
    params, memory, efficient = {}, {}, []
    for spec in candidate_specs(len(backbone.blocks)):
        try:
            plan = shape(copy.deepcopy(backbone), spec, num_classes, task)
        except TunelabError:  # e.g. lora on a model with nothing to target: not a candidate
            continue
        params[spec] = plan.trainable_params
        memory[spec] = round(4 * (plan.total_params + 3 * plan.trainable_params) / 2**20, 1)
        if parameter_efficient(plan):
            efficient.append(spec)
    return params, memory, tuple(efficient)


def parameter_efficient(plan: Plan) -> bool:
    """Whether a plan trains only modules its strategy inserted, besides the head (PEFT's sense of the word).

    Read off the plan rather than declared, so a newly registered strategy is classified by what it does.
    """
    added = plan.inserted_params
    trained = [name for g in plan.groups if g.name != "head" for name in g.names]
    return bool(added) and bool(trained) and all(name in added for name in trained)
