"""DANN's adversary: the gradient reversal layer, the ramp of its weight, the domain classifier and its loss.

The domain loss reads rows of features: one row per example when the head classifies a pooled vector
(images, sentences), one row per real token when it classifies every token (token classification). A
row's domain label is its example's: 0 for the source examples (the first `sources` of the batch), 1 for
the target ones. Padding is no row at all: it is removed before the classifier sees anything, so it adds
nothing to the loss, to the mean's denominator or to any gradient.

May import: torch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

DOMAIN_HIDDEN = 256
"""Width of the domain classifier's hidden layer."""
DOMAIN_DROPOUT = 0.5
"""Dropout in the domain classifier (a classifier that wins too easily gives the features no signal)."""
RAMP_GAMMA = 10.0
"""gamma of the reversal weight's ramp 2 / (1 + exp(-gamma p)) - 1 (the paper's value)."""


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


def domain_rows(
    features: torch.Tensor, sources: int, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows the domain classifier reads, and which of them are target rows (True) rather than source.

    `features` is (B, H), one row per example, or (B, T, H) with `mask` (B, T), 1 for real tokens: then one
    row per real token, in batch order, padding left out. The first `sources` examples are the source ones.
    """
    is_target = torch.arange(features.shape[0], device=features.device) >= sources
    if features.ndim == 2:
        return features, is_target
    if mask is None or mask.shape != features.shape[:2]:
        raise ValueError(f"per-token features {tuple(features.shape)} need a (batch, tokens) padding mask")
    real = mask.bool()
    return features[real], is_target.unsqueeze(1).expand_as(real)[real]


def domain_loss(
    classifier: nn.Module, features: torch.Tensor, sources: int, weight: float, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Binary cross-entropy of the domain classifier on reversed features (`domain_rows`: the first `sources`
    examples are source, the rest target; with per-token features, every real token is a row). Returns
    (the loss averaged over the rows, the number of rows classified correctly, the number of rows)."""
    rows, is_target = domain_rows(features, sources, mask)
    logits = classifier(reverse_gradient(rows, weight)).squeeze(-1)
    correct = ((logits > 0) == is_target).sum()
    return F.binary_cross_entropy_with_logits(logits, is_target.to(logits.dtype)), correct, len(is_target)
