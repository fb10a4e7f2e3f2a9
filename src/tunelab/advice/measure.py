"""Everything advise measures: the data's profile, frozen features, LogME per block, the random-init control.

This is the half of advise that touches models and data; `tunelab.advice.decide` is the rule applied to
what it returns (`Measurements`). The cost is one forward pass per model over at most `max_examples`
examples, about one epoch of fine-tuning (MobileNetV2 on 398 hymenoptera images: 113 s, against 707 s
for a 5-epoch `full` run on the same busy CPU).

No list of strategies or tasks is written here: the candidates whose sizes are measured (for budgets)
are the registered strategies (`tunelab.strategies.REGISTRY`), each at its defaults except retrain, which
is sized at the K the rule will pick; which of them are parameter-efficient is read off their plans; the
tasks advise accepts are the task registry's single-label ones (`tunelab.tasks.single_label_tasks`).

May import: tunelab.advice.decide / profile / transferability, tunelab.runs, tunelab.tasks, tunelab.data,
tunelab.strategies, tunelab.models, tunelab.settings, tunelab.errors, numpy and torch.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from tunelab.advice.decide import Evidence, Measurements, transfer_depth
from tunelab.advice.profile import profile, stratified_sample
from tunelab.advice.transferability import feature_stat_distance, logme, nearest_centroid_accuracy
from tunelab.data.examples import Examples
from tunelab.errors import TunelabError
from tunelab.models.zoo import load_backbone
from tunelab.runs.features import extract_many
from tunelab.runs.loaders import infer_task, load_splits
from tunelab.runs.prepare import prepare
from tunelab.settings import AdviseConfig, ThresholdSettings
from tunelab.strategies import REGISTRY, Plan
from tunelab.tasks import check_modality, single_label_tasks

VAL_FRACTION = 0.2
"""Held out when no validation data is given; advise pools train and val again, so it changes nothing measured."""


def measure(
    model: str,
    data: str,
    val_data: str | None = None,
    task: str = AdviseConfig.task,
    max_examples: int = AdviseConfig.max_examples,
    seed: int = AdviseConfig.seed,
    *,
    transfer_drop: float = ThresholdSettings.transfer_drop,
    control_examples: int | None = None,
    batch_size: int = AdviseConfig.batch_size,
    max_length: int | None = None,
    text_column: str | None = None,
    label_column: str = AdviseConfig.label_column,
    progress: bool = True,
) -> Measurements:
    """Profile `data`, extract `model`'s features on a stratified sample, and score them (see `advise`).

    `transfer_drop` is the one threshold measuring needs: it picks the K at which retrain's size is
    measured, the K `decide` recommends under the same threshold.
    """
    started = time.perf_counter()
    task = infer_task(data, task)
    supported = single_label_tasks()
    if task not in supported:
        raise TunelabError(f"advise does not support task '{task}'; valid: {', '.join(supported)}")
    splits = load_splits(task, data, val_data, VAL_FRACTION, seed, text_column, label_column)
    train, val = splits.train, splits.val
    pool = Examples(train.inputs + val.inputs, train.labels + val.labels, train.classes, train.source)
    _check_data(pool)
    num_classes = len(pool.classes)
    for name, value in (("max_examples", max_examples), ("control_examples", control_examples)):
        if value is not None and value < 4 * num_classes:
            raise TunelabError(f"{name}={value} is too few for {num_classes} classes; use {4 * num_classes} or more")
    # Small or large is about what the strategy will be fitted on: with separate val data, the training
    # data alone (the validation set only measures); without, all of it (the user's own split comes later).
    data_profile = profile(train if val_data is not None else pool, seed=seed)
    index = stratified_sample(pool.labels, max_examples, seed)
    sample = pool.subset(index)
    labels = np.asarray(sample.labels)
    loader_args = (batch_size, max_length, progress)
    per_block, both, control, block_names, feature_seconds = _features(
        model, task, sample, control_examples, loader_args, seed
    )

    pretrained, common = per_block[-1][both], labels[both]
    halves = _halves(common, seed)
    gains = [logme(pretrained[h], common[h], num_classes) - logme(control[h], common[h], num_classes) for h in halves]
    shift = halves_shift = None
    from_val = np.asarray(index) >= len(train)
    if val_data is not None and from_val.sum() >= 2 and (~from_val).sum() >= 4:
        train_rows = per_block[-1][~from_val]
        a, b = _halves(labels[~from_val], seed)
        shift = feature_stat_distance(train_rows, per_block[-1][from_val])
        halves_shift = feature_stat_distance(train_rows[a], train_rows[b])
    block_scores = [logme(f, labels, num_classes) for f in per_block]
    k = transfer_depth(block_scores, transfer_drop)[0]
    params, memory, efficient = candidates(model, k, num_classes)
    evidence = Evidence(
        sample_size=len(sample),
        pool_size=len(pool),
        control_size=len(both),
        block_names=block_names,
        logme_pretrained=logme(pretrained, common, num_classes),
        logme_control=logme(control, common, num_classes),
        logme_gain_noise=abs(gains[0] - gains[1]) / 2,
        logme_per_block=block_scores,
        nearest_centroid_pretrained=nearest_centroid_accuracy(pretrained, common, seed=seed),
        nearest_centroid_control=nearest_centroid_accuracy(control, common, seed=seed),
        chance_accuracy=float(np.bincount(common).max() / len(common)),
        trainable_params=params,
        memory_mb=memory,
        train_val_shift=shift,
        train_halves_shift=halves_shift,
    )
    return Measurements(
        model=model,
        data=str(data),
        task=task,
        profile=data_profile,
        evidence=evidence,
        parameter_efficient=efficient,
        seconds_features=feature_seconds,
        seconds=time.perf_counter() - started,
    )


def _check_data(pool: Examples) -> None:
    if len(pool.classes) < 2:
        found = f"{len(pool.classes)} class ({', '.join(pool.classes)})"
        raise TunelabError(f"{pool.source}: found {found}; advice needs at least 2 classes")
    counts = np.bincount(np.asarray(pool.labels, dtype=np.int64), minlength=len(pool.classes))
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


def _features(model: str, task: str, sample: Examples, control_examples: int | None, loader_args: tuple, seed: int):
    """Pretrained features at every block on the sample, and the random-init control's last block on a part.

    The control can run on a stratified `control_examples` part of the sample only (None: all of it),
    to save time; that part is read once for both models. Returns (per-block features in sample order,
    the part's indices, the control's features there, block names, seconds).
    """
    pretrained = load_backbone(model, pretrained=True)
    check_modality(task, pretrained)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        control = load_backbone(model, pretrained=False)
    blocks = list(range(len(pretrained.blocks)))
    both = stratified_sample(sample.labels, control_examples or len(sample), seed)
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
    return per_block, both, controlled[blocks[-1]], list(pretrained.block_names), seconds


def candidate_specs(k: int) -> list[str]:
    """Every registered strategy at its defaults, in registry order; retrain at the K the rule picks."""
    return [f"{key}:{k}" if key == "retrain" else key for key in REGISTRY]


def candidates(model: str, k: int, num_classes: int) -> tuple[dict[str, int], dict[str, float], tuple[str, ...]]:
    """Trainable parameters, training memory (fp32 weights + grads + AdamW moments) and the parameter-efficient ones."""
    params, memory, efficient = {}, {}, []
    for spec in candidate_specs(k):
        try:
            plan = prepare(model, spec, num_classes)
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
