"""What a run trains, on what: the data read and split, the model prepared for it, and the datasets the epochs read.

The datasets are the raw examples, or, when the first K blocks are frozen and the input is not augmented,
those blocks' output computed once (`runs.feature_cache`): `none` then costs a head per epoch rather than
a backbone.

May import: errors, fileio, settings, strategies, data, tasks, runs.adversary, runs.feature_cache,
runs.identity, runs.loaders, runs.optim, runs.prepare, runs.rundir.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from tunelab.data.examples import Examples, Splits
from tunelab.fileio import atomic_write_text
from tunelab.runs.adversary import Adversary, make_adversary
from tunelab.runs.feature_cache import build_cache, collate_features
from tunelab.runs.identity import automatic_augment, resolved
from tunelab.runs.image_size import with_image_size
from tunelab.runs.loaders import (
    collate_for,
    example_dataset,
    infer_task,
    length_order,
    load_sets,
    make_loader,
    select_splits,
)
from tunelab.runs.optim import describe_learning_rates
from tunelab.runs.prepare import prepare
from tunelab.runs.rundir import RunDir
from tunelab.settings import TrainConfig, to_yaml
from tunelab.strategies import Plan
from tunelab.tasks import get_task
from tunelab.tasks.base import Task

if TYPE_CHECKING:
    from accelerate import Accelerator


@dataclass(frozen=True)
class Job:
    """What a run trains: its settings with every automatic value worked out, the data and the prepared model."""

    config: TrainConfig
    """The run's settings, resolved (`runs.identity.resolved`): task, lr, max_length (text), augment are set."""
    task: Task
    """The task: how labels are read, scored and predicted; its `metric` is the one --metric chose."""
    splits: Splits
    """Training and validation examples (validation in length order for text)."""
    plan: Plan
    """The backbone with the strategy applied, and the parameter groups it trains."""
    adversary: Adversary | None
    """Adversarial training on the word embeddings, when asked for."""
    test: Examples | None = None
    """The test set that scores the best epoch once at the end (length order for text); None = scored on val."""


def load_job(config: TrainConfig) -> Job:
    """Read the data, prepare the model for it, and resolve the settings that depend on both."""
    task = infer_task(config.data, config.task)
    splits, test = load_sets(task, config)  # the test set is held out first; it never trains or selects
    splits = select_splits(splits, config.folds, config.fold, config.train_fraction, config.seed)
    plan = prepare(config.model, config.strategy, len(splits.train.classes), config.trust_remote_code, task=task)
    plan = with_image_size(plan, config.image_size)  # the model's own input size unless --image-size says
    adversary = make_adversary(config, plan.backbone)
    splits = Splits(splits.train, _in_length_order(splits.val))  # validation and test only measure
    test = None if test is None else _in_length_order(test)
    config = resolved(config, plan, task)  # every automatic setting worked out: what config.yaml records
    chosen = get_task(task).selecting(config.metric, splits.val, plan.backbone, config.max_length)  # before any epoch
    return Job(config, chosen, splits, plan, adversary, test)


def _in_length_order(examples: Examples) -> Examples:
    """Texts shortest first, so a measuring pass pays the least padding (images as they are)."""
    order = length_order(examples)
    return examples if order is None else examples.subset(order)


def announce(run: RunDir, job: Job) -> None:
    """Create the run directory with its settings, and say what is about to train."""
    config, plan, splits = job.config, job.plan, job.splits
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.inside(run.config), to_yaml(replace(config, resume=False)))  # its settings, not how started
    print(
        f"{config.model} + {plan.strategy.spec()} on {config.task}: {len(splits.train)} train / "
        f"{len(splits.val)} val{'' if job.test is None else f' / {len(job.test)} test'} examples, "
        f"{len(splits.train.classes)} classes",
        file=sys.stderr,
    )
    print(plan.summary_line(), file=sys.stderr)
    print(describe_learning_rates(config, plan.optimizer_groups(config.lr, config.weight_decay)), file=sys.stderr)
    if job.adversary is not None:
        print(f"adversarial training: {job.adversary.describe()}", file=sys.stderr)


def model_meta(job: Job) -> dict:
    """What every saved model file says about itself."""
    return {
        "classes": list(job.splits.train.classes),
        "model": job.config.model,
        "strategy": job.plan.strategy.spec(),
        "task": job.config.task,
    }


@dataclass(frozen=True)
class Feed:
    """The datasets the epochs read, and the block where their batches enter the model."""

    train: Dataset
    """Training examples (or their cached features)."""
    val: Dataset
    """Validation examples (or their cached features)."""
    collate: Callable
    """Batches a list of dataset items."""
    start: int
    """The first block a batch goes through: K when blocks 0..K-1 are cached, else 0."""
    augment: bool
    """Whether training images are augmented."""
    cache_seconds: float
    """Time spent computing the cache (0 without one)."""


def build_feed(job: Job, run: RunDir, accelerator: Accelerator) -> Feed:
    """The datasets: the raw examples, or the output of the frozen prefix computed once when that is allowed."""
    config, backbone, k = job.config, job.plan.backbone, job.plan.cached_prefix
    augment = config.augment  # resolved by load_job (runs.identity.automatic_augment when unset)
    # A frozen prefix is a pure function of the input only without augmentation; the adversary perturbs the
    # embeddings every step, so with it they cannot be computed once either.
    use_cache = config.cache and k > 0 and not (backbone.modality == "image" and augment) and job.adversary is None
    collate = collate_for(backbone, config.max_length, config.task)
    if config.augmentation != "standard" and not (augment and backbone.modality == "image"):
        if accelerator.is_main_process:  # a preset asked for and not applied is said, not silently dropped
            print(f"tunelab: warning: {_augmentation_off(config, backbone.modality, k)}", file=sys.stderr)

    def dataset(examples, train: bool) -> Dataset:
        policy = config.augmentation if augment and train else False  # a preset name: on, with its policy
        return example_dataset(
            examples, backbone, train=train, augment=policy, task=config.task, max_length=config.max_length
        )

    if not use_cache:
        return Feed(dataset(job.splits.train, True), dataset(job.splits.val, False), collate, 0, augment, 0.0)
    started = time.perf_counter()
    cached = []
    for name, examples in (("train", job.splits.train), ("val", job.splits.val)):
        plain = dataset(examples, False)
        cached.append(
            build_cache(
                backbone.model,
                k,
                make_loader(plain, config.batch_size, collate, config.num_workers),
                plain.labels,
                config.cache_memory_mb / 2,
                run.inside(run.cache / f"{name}-{accelerator.process_index}.npy"),  # never through a link
                accelerator.device,
                desc=f"caching {name} features (blocks 0-{k - 1})",
            )
        )
    return Feed(*cached, collate_features, k, augment, time.perf_counter() - started)


def _augmentation_off(config: TrainConfig, modality: str, cached_prefix: int) -> str:
    """Why --augmentation has no effect on this run: augmentation is off, and how it came to be off."""
    if modality != "image":
        why = "a text model's inputs are not augmented"
    elif automatic_augment(modality, config.cache, cached_prefix):
        why = "the augment setting is off; --augment turns it on"
    else:
        why = "it stays off so the frozen prefix can be cached; --augment turns it on, and the cache off"
    return f"augmentation {config.augmentation} is not applied: image augmentation is off ({why})"
