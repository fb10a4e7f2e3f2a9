"""Evaluate a finished run on labelled data, and predict labels for new inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .data import Examples, read_image_folder_as, read_text_table
from .errors import TunelabError
from .loaders import collate_for, example_dataset, make_loader
from .rundir import load_run
from .tasks.metrics import ClassificationReport, classification_report, top_k


@torch.no_grad()
def predict_logits(accelerator, model, loader: DataLoader, start: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and labels over a loader in eval mode, gathered from every process (duplicates dropped)."""
    was_training = model.training
    model.eval()
    all_logits, all_labels = [], []
    for inputs, labels in loader:
        with accelerator.autocast():
            logits = model(inputs, start=start)
        logits, labels = accelerator.gather_for_metrics((logits.float(), labels))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels).numpy()


def _read_labelled(path: Path, modality: str, classes: tuple[str, ...], config) -> Examples:
    if modality == "image":
        return read_image_folder_as(path, classes)
    return read_text_table(path, config.text_column, config.label_column, classes=classes)


def evaluate(run_path: str | Path, data: str | Path, batch_size: int = 64, trust_remote_code: bool = False) -> ClassificationReport:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of a run's best model on labelled data."""
    from accelerate import Accelerator

    run = load_run(run_path, trust_remote_code)
    backbone = run.plan.backbone
    examples = _read_labelled(Path(data), backbone.modality, run.classes, run.config)
    loader = make_loader(
        example_dataset(examples, backbone, train=False, augment=False), batch_size, collate_for(backbone, run.config.max_length), 0
    )
    accelerator = Accelerator(mixed_precision="no")
    logits, labels = predict_logits(accelerator, backbone.model, loader)
    loss = float(F.cross_entropy(logits, torch.from_numpy(labels)))
    return classification_report(labels, logits.argmax(1).numpy(), run.classes, loss=loss)


@dataclass(frozen=True)
class Prediction:
    """The top labels for one input."""

    input: str
    """The image path or text line."""
    labels: list[tuple[str, float]]
    """(class, probability), most probable first."""


def predict(run_path: str | Path, inputs: list[str], k: int = 3, batch_size: int = 64, trust_remote_code: bool = False) -> list[Prediction]:
    """Top-k labels with probabilities for image paths or text lines."""
    from accelerate import Accelerator

    run = load_run(run_path, trust_remote_code)
    backbone = run.plan.backbone
    if backbone.modality == "image":
        missing = [p for p in inputs if not Path(p).is_file()]
        if missing:
            raise TunelabError(f"{missing[0]}: no such image file")
        items = [Path(p) for p in inputs]
    else:
        items = list(inputs)
    examples = Examples(items, [0] * len(items), run.classes, "command line")
    loader = make_loader(
        example_dataset(examples, backbone, train=False, augment=False), batch_size, collate_for(backbone, run.config.max_length), 0
    )
    logits, _ = predict_logits(Accelerator(mixed_precision="no"), backbone.model, loader)
    ranked = top_k(logits.softmax(-1).numpy(), run.classes, k)
    return [Prediction(str(item), labels) for item, labels in zip(inputs, ranked)]
