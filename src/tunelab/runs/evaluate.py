"""Evaluate a finished run on labelled data, and predict labels for new inputs.

`predict_logits` is also how the training loop validates each epoch, and `score_once` how it scores the
best epoch at the end of a run (on the test set, or on validation when there is none). Texts are run with
the fewest tokens first (`loaders.token_order`), as validation is, so a batch pays little padding; predict
puts its outputs back in the order of its inputs.

May import: data, tasks, runs.accelerator, runs.loaders, runs.sanity, runs.trained. accelerate is not imported here:
`make_accelerator` does it when one is made, and modules that only call `predict_logits` bring their own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tunelab.data import Examples, image_pixel_limit
from tunelab.data.class_names import name_classes, numbered
from tunelab.data.images import image_inputs
from tunelab.data.split_folders import evaluation_folder
from tunelab.runs.accelerator import make_accelerator
from tunelab.runs.loaders import make_loader, token_order
from tunelab.runs.sanity import constant_logits, majority_label, run_flags
from tunelab.runs.trained import LoadedRun, load_run
from tunelab.tasks import get_task
from tunelab.tasks.base import IGNORE, Prediction, Report, Task, labelled_positions


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


@dataclass(frozen=True)
class Scored:
    """A model measured once on the set that scores its run, beside the majority-class baseline on that set."""

    set_name: str
    """Which set: "test" or "validation"."""
    metrics: dict[str, float]
    """The task's scores (its `metric` among them)."""
    examples: int
    """Examples in the set (sentences for NER)."""
    chance: float
    """The metric of always predicting the most frequent training class, on the same set."""
    flags: list[dict]
    """Sanity flags ({"flag", "message"}), empty when nothing looks wrong (`runs.sanity`)."""


def score_once(
    accelerator,
    model,
    loader: DataLoader,
    start: int,
    task: Task,
    examples: Examples,
    set_name: str,
    backbone,
    max_length: int | None,
    train_labels: list,
) -> Scored:
    """Measure `model` on `examples` (batched by `loader`, entering at block `start`): scores, chance and flags.

    Chance goes through the task's own scorer with constant predictions of the most frequent training
    label, so it is exactly the run's metric for that baseline on this set (entity F1 0 for all-`O`).
    """
    logits, labels = predict_logits(accelerator, model, loader, start)
    score = task.scorer(examples, backbone, max_length)
    metrics = score(logits, labels)
    majority = majority_label(train_labels)
    chance = score(constant_logits(len(labels), logits.shape[-1], majority), labels)[task.metric]
    degenerate = task.degenerate(logits.argmax(-1).numpy(), examples.classes)
    flags = run_flags(degenerate, metrics[task.metric], chance, task.metric, set_name, examples.classes[majority])
    return Scored(set_name, metrics, len(examples), chance, flags)


def _loader(task, examples: Examples, backbone, config, batch_size: int, max_image_pixels: int | None) -> DataLoader:
    """Batches of `examples` in order; images over `max_image_pixels` (None: the run's setting) are refused."""
    limit = config.max_image_pixels if max_image_pixels is None else max_image_pixels
    with image_pixel_limit(limit):
        dataset = task.dataset(examples, backbone, train=False, augment=False, max_length=config.max_length)
    return make_loader(dataset, batch_size, task.collate(backbone, config.max_length), 0)


def _labelled(task: Task, run: LoadedRun, data: Path) -> Examples:
    """The labelled examples `evaluate` scores: `data` read as the run reads data, labelled with its classes.

    An image run given a split folder (train/ and val/ or test/ subfolders, as `train --data` takes) scores
    its test/ or else its val/ subfolder (`data.split_folders.evaluation_folder`), and says which on stderr.
    A run with class_names reads the labels as the integers they are written as, then names them.
    """
    if task.modality == "image":
        chosen = evaluation_folder(data, run.classes)
        if chosen is not None:
            role = "the held-out test split" if chosen.name == "test" else "the validation split"
            print(f"evaluating on {chosen} ({role} of the split folder {data})", file=sys.stderr)
            data = chosen
    names = run.config.class_names
    if names is None:
        return task.read(str(data), run.classes, run.config)
    examples = task.read(str(data), numbered(len(run.classes)), run.config)
    return name_classes(examples, run.classes, training=False)


def evaluate(
    run_path: str | Path,
    data: str | Path,
    batch_size: int = 64,
    trust_remote_code: bool = False,
    max_image_pixels: int | None = None,
) -> Report:
    """The task's report of a run's best model on labelled data: accuracy, macro-F1, per class and the
    confusion matrix; entity-level P/R/F1 for NER; the official macro-F1 for relations.

    `max_image_pixels` bounds the images decoded (None: the run's own max_image_pixels)."""
    run = load_run(run_path, trust_remote_code)
    backbone = run.plan.backbone
    task = get_task(run.task)
    examples = _labelled(task, run, Path(data))
    order = token_order(examples, backbone, run.task, run.config.max_length)
    if order is not None:  # the report counts, averages and confuses: it does not depend on the order
        examples = examples.subset(order)
    loader = _loader(task, examples, backbone, run.config, batch_size, max_image_pixels)
    logits, labels = predict_logits(make_accelerator("no"), backbone.model, loader)
    return task.report(examples, backbone, run.config.max_length, logits, labels)


def predict(
    run_path: str | Path,
    inputs: list[str],
    k: int = 3,
    batch_size: int = 64,
    trust_remote_code: bool = False,
    max_image_pixels: int | None = None,
) -> list[Prediction]:
    """Per input: top-k labels with probabilities (classification, relations) or the entities found (NER).

    Inputs are image paths or text lines; for relations a line marks the entities as <e1>..</e1> and
    <e2>..</e2>, or is a JSON object with text, head and tail spans. An image run takes folders too: each
    stands for the images anywhere below it, sorted (`data.images.image_inputs`; files that are not images
    are skipped with a note on stderr, and a folder without images is refused), and gets one prediction
    per image. `max_image_pixels` bounds the images decoded (None: the run's own max_image_pixels).
    """
    run = load_run(run_path, trust_remote_code)
    backbone = run.plan.backbone
    task = get_task(run.task)
    inputs = list(inputs)
    if task.modality == "image":
        expanded = image_inputs(inputs)
        for note in expanded.notes:
            print(f"note: {note}", file=sys.stderr)
        inputs = expanded.files
    examples = task.inputs(inputs, run.classes)
    order = token_order(examples, backbone, run.task, run.config.max_length)
    order = np.arange(len(inputs)) if order is None else order
    examples, inputs = examples.subset(order), [inputs[i] for i in order]
    loader = _loader(task, examples, backbone, run.config, batch_size, max_image_pixels)
    logits, _ = predict_logits(make_accelerator("no"), backbone.model, loader)
    ranked = task.predictions(inputs, examples, backbone, run.config.max_length, logits, run.classes, k)
    restored: list[Prediction] = [None] * len(ranked)  # type: ignore[list-item]
    for position, index in enumerate(order):  # the pass ran in token order; the answer keeps the input order
        restored[index] = ranked[position]
    return restored
