"""DANN (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016): what it adds to each training step.

A small domain classifier reads the features the task head reads (`tap.FeatureTap`), behind a gradient
reversal layer (`reversal`). The classifier learns to tell source from target; the reversed gradient
teaches the layers below to make the two indistinguishable, while the task loss keeps them useful for the
labels. Each training batch holds its source examples and as many unlabelled target examples
(`batches`), in one forward pass (so BatchNorm sees both domains, as in the original implementation);
only the source rows' logits meet the task loss. The reversal weight follows the paper's ramp,
lambda_p = adapt_weight * (2 / (1 + exp(-10 p)) - 1), p the fraction of optimizer steps taken, so the
features are left alone while the domain classifier is still guessing. The classifier itself learns at
full weight (lambda only scales the reversed gradient, as the reference PyTorch implementations do) and
at the head's learning rate.

For token classification the head reads every token, and so does the domain classifier: each real token
is a row with its sentence's domain label, padding is no row, and the domain loss is the mean over the
batch's real tokens (why every token and not each word's first sub-token: `tap`).

The classifier is a module beside the model, not in it: the loop puts its weights into each checkpoint
(`CheckpointSaver.beside`) and its optimizer state into the optimizer's, so a resumed DANN run ends bit
for bit like an uninterrupted one; model.safetensors never holds it.

May import: errors, models, runs.loaders, runs.optim (and torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tunelab.runs.domain.batches import Paired, PairedCollate, WithTarget
from tunelab.runs.domain.reversal import DomainClassifier, domain_loss, reversal_weight
from tunelab.runs.domain.tap import FeatureTap
from tunelab.runs.loaders import make_loader
from tunelab.runs.optim import optimizer_steps

if TYPE_CHECKING:
    from tunelab.settings import TrainConfig

CLASSIFIER_SEED = 15_485_863
"""Offsets the domain classifier's initialisation from the run's other random draws."""


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
            domain, correct, rows = domain_loss(self.classifier, tap.features, sources, weight, tap.mask)
        step.accelerator.backward(task + domain * fraction)
        if synced and step.accelerator.num_processes > 1:  # DDP averages the model's gradients, not these
            for p in self.classifier.parameters():
                if p.grad is not None:
                    p.grad = step.accelerator.reduce(p.grad, reduction="mean")
        self._record(taken // steps_per_epoch, float(domain.detach()), int(correct), rows)
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
        """The latest epoch's domain loss and domain accuracy (0.5: the features no longer tell the domains
        apart), over its rows: examples, or real tokens for token classification."""
        record = self.last_epoch
        if not record:
            return {}
        return {
            "domain_epoch": record["epoch"],
            "domain_loss": record["loss_sum"] / record["batches"],
            "domain_accuracy": record["correct"] / record["rows"],
        }
