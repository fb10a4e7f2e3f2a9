"""What DANN's domain classifier reads: the input of the head's final Linear layer, taken during the forward pass.

That input is what the task head classifies, after the head's own pooling and dropout: one pooled vector
per example for images and sentences (B, H), or every token's hidden state for token classification
(B, T, H). A forward pre-hook on the Linear keeps it, so no model family changes and the features cost
no second pass.

Per-token features come with padding, which must not become rows of the domain loss. The tap takes the
padding mask from where the features come from: a text head receives a `TokenState` (hidden states and
their mask), and a second pre-hook, on the head itself, keeps that mask. The mask then travels with the
features on every path a batch takes: a batch of raw token ids, or cached hidden states of a frozen
prefix (retrain:K, `runs.feature_cache.collate_features` rebuilds the mask), source and target rows
alike. Nothing about the target rows' labels is consulted.

Why every real token and not only each word's first sub-token (the positions the tag loss counts): the
first-sub-token positions are known from the labels, and a target row's labels are placeholders that this
package never reads; the padding mask is the one per-token fact that comes with the features themselves.
The head also reads every real token (its Linear runs on all of them), and a continuation sub-token's state
feeds the first sub-token's through attention, so aligning all of them aligns what the tagger sees.
[CLS] and [SEP] are real tokens and count as rows too. The loss is a mean over token rows, so a domain
whose sentences have more tokens (news against tweets) weighs more in it, as it would in a per-token loss.

May import: errors, models (and torch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from tunelab.errors import TunelabError
from tunelab.models.contract import TokenState


class FeatureTap:
    """Reads the input of a head's final Linear layer during a forward pass (the features the head classifies),
    and the padding mask of the token states the head received, when it received any."""

    def __init__(self, head: nn.Module):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TunelabError("--adapt dann needs a head that ends in a Linear layer; this model's head has none")
        self.head, self.linear = head, linears[-1]
        self.features: torch.Tensor | None = None
        """(B, H) per example, or (B, T, H) per token: the latest forward pass's."""
        self.mask: torch.Tensor | None = None
        """(B, T) 1 for real tokens, when the head received token states; else None."""

    @property
    def width(self) -> int:
        return self.linear.in_features

    @contextmanager
    def reading(self) -> Iterator[FeatureTap]:
        """Inside the block, each forward pass through the head leaves its features in `self.features` (and the
        token mask in `self.mask`)."""
        handles = [
            self.head.register_forward_pre_hook(self._keep_mask),
            self.linear.register_forward_pre_hook(self._keep),
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _keep_mask(self, module: nn.Module, args: tuple) -> None:
        state = args[0] if args else None
        self.mask = state.mask if isinstance(state, TokenState) else None

    def _keep(self, module: nn.Module, args: tuple) -> None:
        self.features = args[0]
