"""Unsupervised domain adaptation: labelled source data (--data), unlabelled target data (--target-data).

Two methods, chosen with --adapt:

- `dann` (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016): a small domain classifier reads the
  features the task head reads, behind a gradient reversal layer. The classifier learns to tell source from
  target; the reversed gradient teaches the layers below to make the two indistinguishable, while the task
  loss keeps them useful for the labels. Each training batch holds its source examples and as many
  unlabelled target examples, in one forward pass (so BatchNorm sees both domains, as in the original
  implementation); only the source rows' logits meet a loss. The reversal weight follows the paper's ramp,
  lambda_p = adapt_weight * (2 / (1 + exp(-10 p)) - 1), p the fraction of optimizer steps taken, so the
  features are left alone while the domain classifier is still guessing. The classifier itself learns at
  full weight (lambda only scales the reversed gradient, as the reference PyTorch implementations do) and
  at the head's learning rate.
- `adabn` (Li et al., 2016): after training, every BatchNorm layer's running mean and variance are
  re-estimated on the target data (a cumulative average over all target examples, without gradients), so
  the model normalises target inputs with target statistics. No extra training; models without
  BatchNorm (the text models) are refused.

The features are the input of the head's final Linear layer (`FeatureTap`): what the classifier reads,
pooled (a CNN head pools first, a text head takes the masked mean of its tokens), after the head's dropout.
A forward pre-hook reads them during the ordinary forward pass, so no model family changes. When a frozen
prefix is cached (retrain:K), the target examples go through it once too, like the source ones
(`runs.job.build_feed`), so a DANN batch of cached source features pairs with cached target features.

What a run keeps: the domain classifier is a module beside the model, not in it; its weights go into each
checkpoint (`CheckpointSaver.extra`) and its optimizer state into the optimizer's, so a resumed DANN run
ends bit for bit like an uninterrupted one. model.safetensors never holds it: predict, eval and export load
a DANN run like any other. An AdaBN run's model.safetensors holds every BatchNorm layer's statistics,
frozen layers included (they are what AdaBN changed).

Target labels are never read: `data.unlabelled` keeps inputs only, and every target row's label is 0.

May import: errors, data, strategies, tasks, runs.loaders, runs.optim, runs.trained (and torch).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import send_to_device
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from tunelab.data.examples import Examples
from tunelab.data.unlabelled import read_unlabelled
from tunelab.errors import TunelabError
from tunelab.runs.loaders import collate_for, example_dataset, make_loader
from tunelab.runs.optim import optimizer_steps
from tunelab.runs.trained import load_trained, save_trained
from tunelab.strategies.base import batchnorm_types
from tunelab.tasks import get_task
from tunelab.tasks.classification import Classification

if TYPE_CHECKING:
    from tunelab.settings import TrainConfig
    from tunelab.strategies import Plan

DOMAIN_HIDDEN = 256
"""Width of the domain classifier's hidden layer."""
DOMAIN_DROPOUT = 0.5
"""Dropout in the domain classifier (a classifier that wins too easily gives the features no signal)."""
RAMP_GAMMA = 10.0
"""gamma of the reversal weight's ramp 2 / (1 + exp(-gamma p)) - 1 (the paper's value)."""
TARGET_SEED = 104_729
"""Offsets the target order's random stream from the source order's (both seeded by (seed, epoch))."""
CLASSIFIER_SEED = 15_485_863
"""Offsets the domain classifier's initialisation from the run's other random draws."""


# ---------------------------------------------------------------- the checks, before anything trains


def check_settings(config: TrainConfig) -> None:
    """--adapt and --target-data come together: one without the other is refused before any data is read."""
    if config.adapt is not None and config.target_data is None:
        raise TunelabError(
            f"--adapt {config.adapt} needs unlabelled target-domain examples: give --target-data PATH "
            "(an image folder, or a text file)"
        )
    if config.target_data is not None and config.adapt is None:
        raise TunelabError(
            f"--target-data {config.target_data} is only used for domain adaptation: add --adapt dann or "
            "--adapt adabn, or leave --target-data out"
        )


def check_plan(config: TrainConfig, plan: Plan, task: str, adversarial: bool) -> None:
    """Refuse what the chosen method cannot do with this task, strategy or model (one line each)."""
    if config.adapt is None:
        return
    backbone = plan.backbone
    if not isinstance(get_task(task), Classification):
        raise TunelabError(
            f"--adapt {config.adapt} works for image-classification and text-classification; task {task} is not "
            "supported"
        )
    if config.adapt == "adabn" and not any(isinstance(m, batchnorm_types()) for m in backbone.model.modules()):
        raise TunelabError(
            f"--adapt adabn re-estimates BatchNorm statistics, but {config.model} has no BatchNorm layer "
            "(text models normalise with LayerNorm); use --adapt dann"
        )
    if config.adapt != "dann":
        return
    if not any(p.requires_grad for p in backbone.blocks.parameters()):
        raise TunelabError(
            f"--adapt dann trains the feature layers against a domain classifier, but strategy "
            f"{plan.strategy.spec()} trains only the head: use a strategy that trains the blocks (full, "
            "retrain:K, lora, adapter, ...) or --adapt adabn"
        )
    if adversarial:
        raise TunelabError("--adapt dann cannot be combined with --adversarial: give one of the two")


def read_target(
    config: TrainConfig, modality: str, classes: tuple[str, ...]
) -> tuple[Examples | None, tuple[str, ...]]:
    """The target examples (every label 0, never read) and the notes on what was ignored in them; None
    without --adapt."""
    if config.adapt is None:
        return None, ()
    target = read_unlabelled(config.target_data, modality, config.text_column, config.label_column)
    if len(target) < 2:
        raise TunelabError(
            f"target_data {config.target_data} holds {len(target)} example; domain adaptation needs at least 2"
        )
    return target.as_examples(classes), target.notes


def describe(config: TrainConfig, target: Examples) -> str:
    """The run's opening line about adaptation."""
    if config.adapt == "dann":
        return (
            f"domain adaptation: dann on {len(target)} unlabelled target examples ({target.source}); "
            f"reversal weight ramps 0 -> {config.adapt_weight:g}; domain classifier at the head's lr"
        )
    return (
        f"domain adaptation: adabn after training, BatchNorm statistics from {len(target)} unlabelled target "
        f"examples ({target.source})"
    )


# ---------------------------------------------------------------- DANN's pieces


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times -weight backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """`x` unchanged; what flows back through it is multiplied by -weight."""
    return GradientReversal.apply(x, weight)


def reversal_weight(progress: float, max_weight: float) -> float:
    """lambda_p = max_weight * (2 / (1 + exp(-10 p)) - 1): 0 at the start, max_weight * 0.9999 at the end."""
    p = min(max(progress, 0.0), 1.0)
    return max_weight * (2.0 / (1.0 + math.exp(-RAMP_GAMMA * p)) - 1.0)


class DomainClassifier(nn.Sequential):
    """Linear - ReLU - Dropout - Linear to one logit: source (0) or target (1)."""

    def __init__(self, num_features: int, hidden: int = DOMAIN_HIDDEN, dropout: float = DOMAIN_DROPOUT):
        super().__init__(nn.Linear(num_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def domain_loss(
    classifier: nn.Module, features: torch.Tensor, sources: int, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of the domain classifier on reversed features (the first `sources` rows are
    source, the rest target); returns (mean loss, number of rows classified correctly)."""
    logits = classifier(reverse_gradient(features, weight)).squeeze(-1)
    domains = torch.zeros_like(logits)
    domains[sources:] = 1.0
    correct = ((logits > 0) == domains.bool()).sum()
    return F.binary_cross_entropy_with_logits(logits, domains), correct


class FeatureTap:
    """Reads the input of a head's final Linear layer during a forward pass: the features the head classifies."""

    def __init__(self, head: nn.Module):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TunelabError("--adapt dann needs a head that ends in a Linear layer; this model's head has none")
        self.linear = linears[-1]
        self.features: torch.Tensor | None = None

    @property
    def width(self) -> int:
        return self.linear.in_features

    @contextmanager
    def reading(self) -> Iterator[FeatureTap]:
        """Inside the block, each forward pass through the head leaves its features in `self.features`."""
        handle = self.linear.register_forward_pre_hook(self._keep)
        try:
            yield self
        finally:
            handle.remove()

    def _keep(self, module: nn.Module, args: tuple) -> None:
        self.features = args[0]


class WithTarget(Sampler):
    """(source index, target index) pairs: the source order from `source` (seeded by (seed, epoch)), each
    index paired with the next of a target order seeded by (seed, epoch) too, drawn again whenever the target
    set runs out. A resumed run therefore pairs exactly as the uninterrupted one."""

    def __init__(self, source: Sampler, targets: int, seed: int):
        self.source, self.targets, self.seed, self.epoch = source, targets, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.source.set_epoch(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + TARGET_SEED)
        order: list[int] = []
        for i in self.source:
            if not order:
                order = torch.randperm(self.targets, generator=generator).tolist()[::-1]
            yield i, order.pop()

    def __len__(self) -> int:
        return len(self.source)


class Paired(Dataset):
    """Items (source item, target item), indexed by the pairs `WithTarget` draws."""

    def __init__(self, source: Dataset, target: Dataset):
        self.source, self.target = source, target

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, pair: tuple[int, int]):
        i, j = pair
        return self.source[i], self.target[j]


class PairedCollate:
    """One batch of the source items followed by the target items (the source collate over both, so text
    pads to one length); the labels are the source rows' only. A class, so DataLoader workers can pickle it."""

    def __init__(self, collate):
        self.collate = collate or default_collate

    def __call__(self, items: list) -> tuple[Any, torch.Tensor]:
        sources = [s for s, _ in items]
        inputs, labels = self.collate(sources + [t for _, t in items])
        return inputs, labels[: len(sources)]


class Dann:
    """The domain classifier, the feature tap and the ramp: what a DANN run adds to each step."""

    def __init__(self, backbone, config: TrainConfig, device: torch.device):
        self.tap = FeatureTap(backbone.head)
        with torch.random.fork_rng(devices=[]):  # its initialisation draws nothing from the run's stream
            torch.manual_seed(config.seed + CLASSIFIER_SEED)
            self.classifier = DomainClassifier(self.tap.width).to(device)
        self.max_weight, self.epochs, self.seed = config.adapt_weight, config.epochs, config.seed
        self.last_epoch: dict = {}
        """The domain loss and accuracy of the latest epoch trained (summary.json)."""

    def loader(self, source: Dataset, target: Dataset, sampler: Sampler, collate, config: TrainConfig) -> DataLoader:
        """Training batches of source examples (in `sampler`'s order) each followed by as many target examples."""
        pairs = WithTarget(sampler, len(target), self.seed)
        return make_loader(Paired(source, target), config.batch_size, PairedCollate(collate), config.num_workers, pairs)

    def optimizer_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The domain classifier's parameters at the head's lr; no weight decay on its biases."""
        params = list(self.classifier.parameters())
        return [
            {"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": weight_decay, "name": "domain"},
            {"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0, "name": "domain.no_decay"},
        ]

    def backward(self, step, inputs, labels: torch.Tensor, share, fraction: float, synced: bool) -> torch.Tensor:
        """One batch (source rows, then target rows): the task loss on the source rows plus the domain loss
        behind the reversal, backward; returns the task loss as the loop computes it (mean, or summed over
        `share` under gradient accumulation). `fraction` is the batch's part of its accumulation group, which
        scales the domain loss (1 without accumulation). `step` is the loop's Step (`runs.epoch`)."""
        sources = len(labels)
        steps_per_epoch = optimizer_steps(len(step.loader), step.accumulation)
        taken = step.scheduler.last_epoch  # optimizer steps so far: restored with the scheduler on resume
        weight = reversal_weight(taken / max(self.epochs * steps_per_epoch, 1), self.max_weight)
        with step.accelerator.autocast(), self.tap.reading() as tap:
            logits = step.model(inputs, start=step.start)[:sources]
            if share is None:
                task = step.loss(logits, labels)
            else:
                task = step.loss(logits, labels, reduction="sum") / share
            domain, correct = domain_loss(self.classifier, tap.features, sources, weight)
        step.accelerator.backward(task + domain * fraction)
        if synced and step.accelerator.num_processes > 1:  # DDP averages the model's gradients, not these
            for p in self.classifier.parameters():
                if p.grad is not None:
                    p.grad = step.accelerator.reduce(p.grad, reduction="mean")
        self._record(taken // steps_per_epoch, float(domain.detach()), int(correct), len(tap.features))
        return task

    def _record(self, epoch: int, loss: float, correct: int, rows: int) -> None:
        if self.last_epoch.get("epoch") != epoch + 1:
            self.last_epoch = {"epoch": epoch + 1, "loss_sum": 0.0, "correct": 0, "rows": 0, "batches": 0}
        record = self.last_epoch
        record["loss_sum"] += loss
        record["correct"] += correct
        record["rows"] += rows
        record["batches"] += 1

    def summary(self) -> dict:
        """The latest epoch's domain loss and domain accuracy (0.5: the features no longer tell the domains apart)."""
        record = self.last_epoch
        if not record:
            return {}
        return {
            "domain_epoch": record["epoch"],
            "domain_loss": record["loss_sum"] / record["batches"],
            "domain_accuracy": record["correct"] / record["rows"],
        }


# ---------------------------------------------------------------- AdaBN


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device, start: int = 0) -> int:
    """AdaBN: replace every BatchNorm layer's running statistics by their cumulative average over `loader`.

    Only the BatchNorm layers run in train mode (dropout stays off), without gradients; momentum None makes
    the running statistics the plain average over the batches. A last batch of one example is skipped when
    others came before it (BatchNorm cannot normalise one example of a 1x1 feature map). Returns the number
    of layers adapted; every other tensor of the model is left as it was.
    """
    layers = [m for m in model.modules() if isinstance(m, batchnorm_types())]
    modes = [(m, m.training) for m in model.modules()]  # each module's own mode (a frozen block may be in eval)
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        seen = 0
        for inputs, labels in loader:
            if len(labels) == 1 and seen:
                break
            model(send_to_device(inputs, device), start=start)
            seen += len(labels)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, training in modes:
            m.train(training)
    return len(layers)


def batchnorm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every BatchNorm layer's buffers (running mean, variance, batches counted), by their names in `model`."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, batchnorm_types()):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                if buffer is not None:
                    state[f"{name}.{buffer_name}" if name else buffer_name] = buffer.detach()
    return state


# ---------------------------------------------------------------- after training


@dataclass
class Adaptation:
    """What --adapt did, for summary.json and the run's last line."""

    method: str | None
    """'dann', 'adabn' or None (no adaptation)."""
    config: TrainConfig | None = None
    """The run's settings (target_data, adapt_weight); None without adaptation."""
    target: Examples | None = None
    """The target examples adapted to; None without adaptation."""
    details: dict = field(default_factory=dict)
    """What the method reports: DANN's last domain loss and accuracy, AdaBN's number of layers."""

    def summary(self, scored_on: str) -> dict:
        """summary.json's `domain_adaptation` key (nothing without --adapt)."""
        if self.method is None:
            return {}
        return {
            "domain_adaptation": {
                "method": self.method,
                "target_data": str(self.config.target_data),
                "target_examples": len(self.target),
                "scored_domain": "target" if scored_on == "test" else "source",
                **({"adapt_weight": self.config.adapt_weight} if self.method == "dann" else {}),
                **self.details,
            }
        }

    def note(self, scored_on: str) -> str:
        """An addition to the run's last line: which domain the score is from."""
        if self.method is None:
            return ""
        if scored_on == "test":
            return f" (target domain, after {self.method}; val is the source domain)"
        return f"; source domain only: give the labelled target data as --test-data to score {self.method} on it"


def finish(job, step, run, meta: dict) -> Adaptation:
    """After the epochs: AdaBN re-estimates the best model's BatchNorm statistics on the target data and saves
    it (model.safetensors, statistics of every BatchNorm layer included); DANN has nothing left to do. Returns
    what summary.json and the last line say about the adaptation."""
    config = job.config
    if config.adapt is None:
        return Adaptation(None)
    if config.adapt == "dann":
        return Adaptation("dann", config, job.target, step.dann.summary())
    backbone, accelerator = job.plan.backbone, step.accelerator
    saved = Path(run.model).is_file()
    if saved:
        load_trained(run.model, backbone.model)
    dataset = example_dataset(job.target, backbone, False, False, config.task, config.max_length)
    loader = make_loader(dataset, config.batch_size, collate_for(backbone, config.max_length, config.task), 0)
    layers = adapt_batchnorm(backbone.model, loader, accelerator.device)
    if accelerator.is_main_process:
        if saved:
            save_trained(run.inside(run.model), backbone.model, meta, extra=batchnorm_state(backbone.model))
        print(f"adabn: {layers} BatchNorm layers re-estimated on {len(job.target)} target examples", file=sys.stderr)
    accelerator.wait_for_everyone()
    return Adaptation("adabn", config, job.target, {"batchnorm_layers": layers})
