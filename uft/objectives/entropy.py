"""The entropy family: ENT, IM, Universal Entropy Optimization (UEO) and its label oracle."""

from __future__ import annotations

import torch
from torch import Tensor

from uft.objectives.base import Objective

#: Added inside the logarithm of the entropy, as in the reference implementation of UEO.
ENTROPY_EPS = 1e-5


def entropy(probs: Tensor, eps: float = ENTROPY_EPS) -> Tensor:
    """Shannon entropy along the last dimension, ``H(p) = -sum_k p_k log(p_k + eps)``."""
    return -(probs * torch.log(probs + eps)).sum(dim=-1)


class ENT(Objective):
    """Mean conditional entropy, ``L = mean_i H(p_i)`` (Tent: Wang et al., "Tent: Fully Test-time Adaptation by
    Entropy Minimization", ICLR 2021), on whichever parameters the module tunes."""

    def forward(self, logits: Tensor, table: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        return entropy(torch.softmax(logits, dim=-1)).mean()


class UEO(Objective):
    """Universal Entropy Optimization (Liang et al., ICML 2024, arXiv 2308.12919).

    With training probabilities ``p_i = softmax(logits_i)`` and per-sample confidences ``w_i``::

        L = sum_i w_i H(p_i) / sum_i w_i  -  trade * H( sum_i (1/w_i) p_i / sum_i (1/w_i) )

    The first term sharpens predictions of confident (likely known-class) samples; the second keeps the
    marginal prediction diverse, weighted towards the less confident (likely unknown-class) samples.
    Confidences are ``w_i = max_k softmax_k(cos_ik / tau)`` from the zero-shot model, computed once before
    training (:meth:`prepare`).

    Args:
        trade: weight ``lambda`` of the marginal-entropy term.
        tau: temperature of the softmax over plain cosine similarities that gives the confidence weights.
    """

    needs_table = True

    def __init__(self, trade: float = 1.0, tau: float = 1.0) -> None:
        super().__init__()
        self.trade = trade
        self.tau = tau

    def confidence(self, cosine: Tensor) -> Tensor:
        """``w_i = max_k softmax_k(cos_ik / tau)``."""
        return torch.softmax(cosine / self.tau, dim=-1).max(dim=-1).values

    def prepare(self, cosine: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.confidence(cosine)

    def forward(self, logits: Tensor, weights: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        if weights is None:
            raise ValueError(f"{type(self).__name__} needs per-sample confidence weights")
        probs = torch.softmax(logits, dim=-1)
        weights = weights.to(probs.dtype)
        conditional = (weights * entropy(probs)).sum() / weights.sum()
        inverse = 1.0 / weights
        marginal = (inverse[:, None] * probs).sum(dim=0) / inverse.sum()
        return conditional - self.trade * entropy(marginal)


class IM(UEO):
    """Information maximisation (SHOT-IM: Liang et al., "Do We Really Need to Access the Source Data?", ICML
    2020): ``L = mean_i H(p_i) - trade * H(mean_i p_i)``, which is UEO with every weight 1.

    Args:
        trade: weight ``lambda`` of the marginal-entropy (diversity) term.
    """

    needs_table = False

    def __init__(self, trade: float = 1.0) -> None:
        super().__init__(trade=trade)

    def forward(self, logits: Tensor, table: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        return super().forward(logits, torch.ones(logits.shape[0], dtype=logits.dtype, device=logits.device))


class UEOOracle(UEO):
    """UEO with weights read from the target labels: ``w_i = 1`` for known-class samples and ``unknown_weight``
    for unknown ones (labels ``>= K``). **Uses labels**: an analysis upper bound of UEO's weighting, not an
    unsupervised method.

    Args:
        trade: weight ``lambda`` of the marginal-entropy term.
        unknown_weight: weight of unknown-class samples.
    """

    uses_labels = True

    def __init__(self, trade: float = 1.0, unknown_weight: float = 1e-3) -> None:
        super().__init__(trade=trade)
        self.unknown_weight = unknown_weight

    def prepare(self, cosine: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError("UEOOracle reads the target labels; none were given")
        known = labels.to(cosine.device) < cosine.shape[1]
        ones = torch.ones(known.shape, dtype=cosine.dtype, device=cosine.device)
        return torch.where(known, ones, ones * self.unknown_weight)
