"""Adversarial training on the word embeddings: FGM (Miyato et al. 2017) and PGD (Madry et al. 2018).

Each step adds the gradient of a loss on a worst-case nudge of the token embeddings to the ordinary
gradient: a regulariser that makes a text model robust to small changes of meaning-carrying vectors, and
often a point or two more accurate. The nudge goes on the embedding *table* rows the batch uses, with L2
norm epsilon (FGM: one step along the normalised gradient; PGD: `steps` smaller steps, each projected back
into the epsilon ball). The rows are copied before and copied back after, so the weights are bit-for-bit
what they were when the optimizer steps; the perturbation never leaks into the model.

Strategy-agnostic: the table needs a gradient for the attack even when the strategy freezes it (none,
adapter, lora), so `requires_grad` is switched on for the attack only and the table's gradient is
dropped afterwards; its frozen state, and the optimizer's view of it, are unchanged.

The training loop calls `Adversary.backward` in place of the plain backward pass of each step.

May import: errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tunelab.errors import TunelabError

METHODS = ("fgm", "pgd")


@dataclass
class Adversary:
    """FGM or PGD on one embedding table; `backward` replaces the plain `loss.backward()` of a step."""

    embedding: nn.Embedding
    """The token embedding table to perturb."""
    method: str = "fgm"
    """'fgm' (one step) or 'pgd' (projected steps)."""
    epsilon: float = 1.0
    """L2 radius of the perturbation of the used rows."""
    steps: int = 3
    """PGD steps (FGM always takes one)."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise TunelabError(f"adversarial method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.epsilon <= 0:
            raise TunelabError(f"adv_epsilon must be positive, got {self.epsilon}")
        if self.steps < 1:
            raise TunelabError(f"adv_steps must be at least 1, got {self.steps}")

    def describe(self) -> str:
        steps = f", {self.steps} steps" if self.method == "pgd" else ""
        return f"{self.method.upper()} on the word embeddings, epsilon {self.epsilon:g}{steps}"

    def backward(
        self,
        compute_loss: Callable[[], torch.Tensor],
        backward: Callable[[torch.Tensor], None],
        params: Sequence[nn.Parameter],
    ) -> torch.Tensor:
        """Clean loss backward, then the adversarial loss backward; returns the clean loss.

        `params` are the parameters the optimizer updates: they end with clean + adversarial gradients
        (for PGD, the last step's adversarial gradient, as in Madry et al.). The embedding weights end
        exactly as they started.
        """
        weight = self.embedding.weight
        was_trainable = weight.requires_grad
        weight.requires_grad_(True)
        try:
            loss = compute_loss()
            backward(loss)
            if weight.grad is None:
                return loss  # the batch did not reach the embeddings (e.g. cached features): nothing to attack
            rows = torch.nonzero(weight.grad.abs().sum(1)).squeeze(1)
            original = weight.detach()[rows].clone()
            clean = [None if p.grad is None else p.grad.clone() for p in params]
            delta = torch.zeros_like(original)
            steps = 1 if self.method == "fgm" else self.steps
            step_size = self.epsilon if self.method == "fgm" else 2 * self.epsilon / steps
            attacked = False
            try:
                for _ in range(steps):
                    grad = weight.grad[rows]
                    norm = torch.linalg.vector_norm(grad)
                    if norm == 0 or not torch.isfinite(norm):
                        break
                    delta = _project(delta + step_size * grad / norm, self.epsilon)
                    with torch.no_grad():
                        weight[rows] = original + delta
                    for p in [*params, weight]:
                        p.grad = None
                    backward(compute_loss())
                    attacked = True
            finally:
                with torch.no_grad():
                    weight[rows] = original
            if attacked:  # gradient = clean + adversarial (for a trainable table too: it is among params)
                for p, g in zip(params, clean):
                    if g is not None:
                        p.grad = g if p.grad is None else p.grad + g
            if not was_trainable:
                weight.grad = None
            return loss
        finally:
            weight.requires_grad_(was_trainable)


def _project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """delta scaled back onto the L2 ball of radius epsilon when it left it."""
    norm = torch.linalg.vector_norm(delta)
    return delta * (epsilon / norm) if norm > epsilon else delta


def make_adversary(config, backbone) -> Adversary | None:
    """The adversary a TrainConfig asks for (None when `adversarial` is off)."""
    if config.adversarial is None:
        return None
    if backbone.word_embeddings is None:
        raise TunelabError(
            f"--adversarial {config.adversarial} perturbs word embeddings; {backbone.name} is not a text model"
        )
    return Adversary(backbone.word_embeddings, config.adversarial, config.adv_epsilon, config.adv_steps)
