"""Evaluate a finished run on labelled data, and predict labels for new inputs.

`predict_logits` is also how the training loop validates each epoch.

May import: data, tasks, runs.loaders, runs.trained. accelerate is imported lazily, where an Accelerator is
made (the heavy-library exception): modules that only call `predict_logits` bring their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tunelab.data import Examples
from tunelab.runs.loaders import make_loader
from tunelab.runs.trained import load_run
from tunelab.tasks import get_task
from tunelab.tasks.base import IGNORE, Prediction, Report, labelled_positions


@torch.no_grad()
def predict_logits(accelerator, model, loader: DataLoader, start: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and labels of every labelled position over a loader in eval mode, gathered from every process.

    A position is an example for single-label tasks and a labelled token for token classification (labels
    IGNORE are dropped), so the result is always (N, classes) logits and (N,) labels, in loader order.
    """
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    for inputs, labels in loader:
        with accelerator.autocast():
            logits = model(inputs, start=start)
        if labels.ndim > 1:  # token labels: pad to one length across processes before gathering
            logits = accelerator.pad_across_processes(logits, dim=1)
            labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE)
        logits, labels = accelerator.gather_for_metrics((logits.float(), labels))
        logits, labels = labelled_positions(logits, labels)
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels).numpy()


def _loader(task, examples: Examples, backbone, config, batch_size: int) -> DataLoader:
    dataset = task.dataset(examples, backbone, train=False, augment=False, max_length=config.max_length)
    return make_loader(dataset, batch_size, task.collate(backbone, config.max_length), 0)


def evaluate(run_path: str | Path, data: str | Path, batch_size: int = 64, trust_remote_code: bool = False) -> Report:
    """The task's report of a run's best model on labelled data: accuracy, macro-F1, per class and the
    confusion matrix; entity-level P/R/F1 for NER; the official macro-F1 for relations."""
    from accelerate import Accelerator

    run = load_run(run_path, trust_remote_code)
    backbone = run.plan.backbone
    task = get_task(run.task)
    examples = task.read(str(data), run.classes, run.config)
    loader = _loader(task, examples, backbone, run.config, batch_size)
    logits, labels = predict_logits(Accelerator(mixed_precision="no"), backbone.model, loader)
    return task.report(examples, backbone, run.config.max_length, logits, labels)


def predict(
    run_path: str | Path, inputs: list[str], k: int = 3, batch_size: int = 64, trust_remote_code: bool = False
) -> list[Prediction]:
    """Per input: top-k labels with probabilities (classification, relations) or the entities found (NER).

    Inputs are image paths or text lines; for relations a line marks the entities as <e1>..</e1> and
    <e2>..</e2>, or is a JSON object with text, head and tail spans.
    """
    from accelerate import Accelerator

    run = load_run(run_path, trust_remote_code)
    backbone = run.plan.backbone
    task = get_task(run.task)
    examples = task.inputs(list(inputs), run.classes)
    loader = _loader(task, examples, backbone, run.config, batch_size)
    logits, _ = predict_logits(Accelerator(mixed_precision="no"), backbone.model, loader)
    return task.predictions(list(inputs), examples, backbone, run.config.max_length, logits, run.classes, k)
