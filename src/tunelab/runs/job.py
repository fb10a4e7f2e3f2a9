"""What a run trains, on what: the data read and split, the model prepared for it, and the datasets the epochs read.

The datasets are the raw examples, or, when the first K blocks are frozen and the input is not augmented,
those blocks' output computed once (`runs.feature_cache`): `none` then costs a head per epoch rather than
a backbone. With --feature-store (every run of a compare), that output is read from a store the runs share
when another run computed it already (`runs.feature_store`).

May import: errors, fileio, settings, strategies, data, models.contract, tasks, runs.adversary, runs.domain,
runs.feature_cache, runs.feature_store, runs.folding, runs.identity, runs.loaders, runs.optim, runs.prepare,
runs.rundir.
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
from tunelab.models.contract import Backbone, head_pool
from tunelab.runs import domain
from tunelab.runs.adversary import Adversary, make_adversary
from tunelab.runs.feature_cache import build_cache, collate_features
from tunelab.runs.feature_store import slot_for
from tunelab.runs.folding import folded_prefix
from tunelab.runs.identity import automatic_augment, resolved
from tunelab.runs.image_size import with_image_size
from tunelab.runs.loaders import (
    collate_for,
    example_dataset,
    infer_task,
    load_sets,
    make_loader,
    select_splits,
    token_order,
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
    target: Examples | None = None
    """Unlabelled target-domain examples for --adapt (every label 0, never read); None without --adapt."""
    target_notes: tuple[str, ...] = ()
    """What reading the target data ignored (a label column, class folder names): warnings for the run to print."""


def load_job(config: TrainConfig) -> Job:
    """Read the data, prepare the model for it, and resolve the settings that depend on both."""
    domain.check_settings(config)  # --adapt and --target-data come together
    task = infer_task(config.data, config.task)
    splits, test = load_sets(task, config)  # the test set is held out first; it never trains or selects
    splits = select_splits(splits, config.folds, config.fold, config.train_fraction, config.seed)
    plan = prepare(config.model, config.strategy, len(splits.train.classes), config.trust_remote_code, task=task)
    plan = with_image_size(plan, config.image_size)  # the model's own input size unless --image-size says
    adversary = make_adversary(config, plan.backbone)
    domain.check_plan(config, plan, task, adversary is not None)  # the task, strategy and model --adapt needs
    target, notes = domain.read_target(config, task, plan.backbone.modality, splits.train.classes)  # None: no --adapt
    splits = Splits(splits.train, _in_length_order(splits.val, plan, task, config))  # validation and test only measure
    test = None if test is None else _in_length_order(test, plan, task, config)
    config = resolved(config, plan, task)  # every automatic setting worked out: what config.yaml records
    set_attention_dropout(plan.backbone, config.attention_dropout)
    chosen = get_task(task).selecting(config.metric, splits.val, plan.backbone, config.max_length)  # before any epoch
    return Job(config, chosen, splits, plan, adversary, test, target, notes)


def set_attention_dropout(backbone: Backbone, p: float | None) -> None:
    """Give every attention-weight dropout of `backbone` probability `p` (None: keep the checkpoint's).

    At 0, torch's scaled-dot-product attention takes its fused kernel in training too: on a CPU it has no
    kernel for dropout on attention weights, so with it every layer materialises its attention matrices
    (batch x heads x tokens x tokens, for the forward and again for the backward). Evaluation never drops.
    """
    if p is None:
        return
    for dropout in backbone.attention_dropouts:
        dropout.p = p


def _in_length_order(examples: Examples, plan: Plan, task: str, config: TrainConfig) -> Examples:
    """Texts with the fewest tokens first, so a measuring pass pays the least padding (images as they are)."""
    order = token_order(examples, plan.backbone, task, config.max_length)
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
    if job.target is not None:
        print(domain.describe(config, job.target), file=sys.stderr)
        for note in job.target_notes:
            print(f"tunelab: warning: {note}", file=sys.stderr)


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
    target: Dataset | None = None
    """DANN's unlabelled target examples, preprocessed (and cached) as the training examples are; else None."""


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
    if config.length_grouping and backbone.modality != "text" and accelerator.is_main_process:  # loaders.train_sampler
        print("tunelab: warning: length_grouping is not applied: images have no length to group by", file=sys.stderr)
    if config.attention_dropout is not None and not backbone.attention_dropouts and accelerator.is_main_process:
        print(f"tunelab: warning: attention_dropout is not applied: {backbone.name} has none", file=sys.stderr)

    def dataset(examples, train: bool) -> Dataset:
        policy = config.augmentation if augment and train else False  # a preset name: on, with its policy
        return example_dataset(
            examples, backbone, train=train, augment=policy, task=config.task, max_length=config.max_length
        )

    target = job.target if config.adapt == "dann" else None  # DANN trains on them; AdaBN reads them after training
    if not use_cache:
        train, val = dataset(job.splits.train, True), dataset(job.splits.val, False)
        return Feed(train, val, collate, 0, augment, 0.0, None if target is None else dataset(target, True))
    started = time.perf_counter()
    prefix = folded_prefix(backbone.model, k)  # BatchNorms folded into their convolutions for this one pass
    pool = head_pool(backbone.head) if k == len(backbone.blocks) else None  # all frozen: keep the pooled vector
    cached = []
    sets = (("train", job.splits.train), ("val", job.splits.val), *((("target", target),) if target else ()))
    for name, examples in sets:
        plain = dataset(examples, False)
        cached.append(
            build_cache(
                prefix,
                k,
                make_loader(plain, config.batch_size, collate, config.num_workers),
                plain.labels,
                config.cache_memory_mb / len(sets),
                run.inside(run.cache / f"{name}-{accelerator.process_index}.npy"),  # never through a link
                accelerator.device,
                desc=f"caching {name} features (blocks 0-{k - 1}{', pooled' if pool else ''})",
                shared=slot_for(
                    config, backbone, k, examples, plain, accelerator.device, accelerator.is_main_process, pool
                ),
                pool=pool,
            )
        )
    target_features = cached.pop() if target is not None else None  # through the same frozen prefix
    return Feed(*cached, collate_features, k, augment, time.perf_counter() - started, target_features)


def _augmentation_off(config: TrainConfig, modality: str, cached_prefix: int) -> str:
    """Why --augmentation has no effect on this run: augmentation is off, and how it came to be off."""
    if modality != "image":
        why = "a text model's inputs are not augmented"
    elif automatic_augment(modality, config.cache, cached_prefix):
        why = "the augment setting is off; --augment turns it on"
    else:
        why = "it stays off so the frozen prefix can be cached; --augment turns it on, and the cache off"
    return f"augmentation {config.augmentation} is not applied: image augmentation is off ({why})"
