"""The entropy family of objectives: Universal Entropy Optimization (UEO) and its building blocks."""

from __future__ import annotations

import torch
from torch import Tensor

from uft.objectives.base import Objective

#: Added inside the logarithm of the entropy, as in the reference implementation of UEO.
ENTROPY_EPS = 1e-5


def entropy(probs: Tensor, eps: float = ENTROPY_EPS) -> Tensor:
    """Shannon entropy along the last dimension, ``H(p) = -sum_k p_k log(p_k + eps)``."""
    return -(probs * torch.log(probs + eps)).sum(dim=-1)


class UEO(Objective):
    """Universal Entropy Optimization (Liang et al., ICML 2024, arXiv 2308.12919).

    With training probabilities ``p_i = softmax(logits_i)`` and per-sample confidences ``w_i``::

        L = sum_i w_i H(p_i) / sum_i w_i  -  trade * H( sum_i (1/w_i) p_i / sum_i (1/w_i) )

    The first term sharpens predictions of confident (likely known-class) samples; the second keeps the
    marginal prediction diverse, weighted towards the less confident (likely unknown-class) samples.
    Confidences are ``w_i = max_k softmax_k(cos_ik / tau)`` from the zero-shot model, computed once before
    training.

    Args:
        trade: weight ``lambda`` of the marginal-entropy term.
        tau: temperature of the softmax over plain cosine similarities that gives the confidence weights.
    """

    needs_confidence = True

    def __init__(self, trade: float = 1.0, tau: float = 1.0) -> None:
        super().__init__()
        self.trade = trade
        self.tau = tau

    def confidence(self, cosine: Tensor) -> Tensor:
        return torch.softmax(cosine / self.tau, dim=-1).max(dim=-1).values

    def forward(self, logits: Tensor, weights: Tensor | None = None) -> Tensor:
        if weights is None:
            raise ValueError("UEO needs per-sample confidence weights")
        probs = torch.softmax(logits, dim=-1)
        weights = weights.to(probs.dtype)
        conditional = (weights * entropy(probs)).sum() / weights.sum()
        inverse = 1.0 / weights
        marginal = (inverse[:, None] * probs).sum(dim=0) / inverse.sum()
        return conditional - self.trade * entropy(marginal)
