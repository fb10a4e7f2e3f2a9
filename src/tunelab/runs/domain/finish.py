"""After the epochs: what --adapt still does (AdaBN's statistics), and what the run says about it.

May import: data, runs.domain.adabn, runs.loaders, runs.trained (and torch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.data.examples import Examples
from tunelab.runs.domain.adabn import adapt_batchnorm, batchnorm_state
from tunelab.runs.loaders import collate_for, example_dataset, make_loader
from tunelab.runs.trained import load_trained, save_trained

if TYPE_CHECKING:
    from tunelab.settings import TrainConfig


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
