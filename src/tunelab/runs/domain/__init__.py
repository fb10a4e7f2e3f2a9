"""Unsupervised domain adaptation: labelled source data (--data), unlabelled target data (--target-data).

Two methods, chosen with --adapt:

- `dann` (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016): a small domain classifier reads the
  features the task head reads, behind a gradient reversal layer whose weight ramps from 0 to
  --adapt-weight; the reversed gradient teaches the layers below to make source and target
  indistinguishable while the task loss keeps them useful for the labels. Image classification, text
  classification and token classification (NER: the classifier reads every real token, one domain label
  per token row, padding masked out).
- `adabn` (Li et al., 2016): after training, every BatchNorm layer's running statistics are re-estimated
  on the target data. Models without BatchNorm (the text models) are refused.

One concept per file:

    checks.py     before anything trains: --adapt's settings, task, strategy and model; the target data read
    reversal.py   the gradient reversal layer, the ramp, the domain classifier and its loss over rows
    tap.py        `FeatureTap`: the head's Linear input (and the token mask) read during the forward pass
    batches.py    training batches of source examples followed by as many target examples, resumable
    dann.py       `Dann`: what DANN adds to a step (the domain loss, its optimizer groups, its summary)
    adabn.py      BatchNorm statistics re-estimated on the target data
    finish.py     after the epochs: AdaBN saved, and what summary.json and the last line say

When a frozen prefix is cached (retrain:K), the target examples go through it once too, like the source
ones (`runs.job.build_feed`), so a DANN batch of cached source features pairs with cached target features.
The domain classifier is a module beside the model: in each checkpoint (resume is bit for bit), never in
model.safetensors, so predict, eval and export load a DANN run like any other. Target labels are never
read: `data.unlabelled` keeps inputs only, and every target label is 0 (a list of 0s per sentence for
token classification).

May import: errors, data, models, strategies, tasks, runs.loaders, runs.optim, runs.trained (and torch).
"""

from tunelab.runs.domain.adabn import adapt_batchnorm, batchnorm_state
from tunelab.runs.domain.batches import TARGET_SEED, Paired, PairedCollate, WithTarget
from tunelab.runs.domain.checks import check_plan, check_settings, describe, read_target
from tunelab.runs.domain.dann import CLASSIFIER_SEED, Dann
from tunelab.runs.domain.finish import Adaptation, finish
from tunelab.runs.domain.reversal import (
    DOMAIN_DROPOUT,
    DOMAIN_HIDDEN,
    RAMP_GAMMA,
    DomainClassifier,
    GradientReversal,
    domain_loss,
    domain_rows,
    reversal_weight,
    reverse_gradient,
)
from tunelab.runs.domain.tap import FeatureTap

__all__ = [
    "CLASSIFIER_SEED",
    "DOMAIN_DROPOUT",
    "DOMAIN_HIDDEN",
    "RAMP_GAMMA",
    "TARGET_SEED",
    "Adaptation",
    "Dann",
    "DomainClassifier",
    "FeatureTap",
    "GradientReversal",
    "Paired",
    "PairedCollate",
    "WithTarget",
    "adapt_batchnorm",
    "batchnorm_state",
    "check_plan",
    "check_settings",
    "describe",
    "domain_loss",
    "domain_rows",
    "finish",
    "read_target",
    "reversal_weight",
    "reverse_gradient",
]
