"""Out-of-distribution scores and the label-free rules that turn them into a known/unknown decision.

A score maps the cosine similarities (N, K) between images and the K known-class text features to one number per
image, higher meaning "more likely one of the known classes". A rule picks the threshold below which an image is
called unknown, from scores alone (no labels): a fixed value, the quantile matching an assumed unknown share, or
the split of the score histogram into two groups.
"""

from __future__ import annotations

import torch
from torch import Tensor


class OODScore:
    """Base class: ``score(cosine) -> (N,)``, higher = more likely known."""

    def __call__(self, cosine: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class MSP(OODScore):
    """Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017): ``max_k softmax(cos / T)_k``. The UEO paper's
    score, at temperature 1 on plain cosines.

    Args:
        temperature: softmax temperature ``T`` applied to the cosine similarities.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def __call__(self, cosine: Tensor) -> Tensor:
        return torch.softmax(cosine.float() / self.temperature, dim=-1).max(dim=-1).values


class MaxLogit(OODScore):
    """Maximum logit (Hendrycks et al., ICML 2022): the largest cosine similarity."""

    def __call__(self, cosine: Tensor) -> Tensor:
        return cosine.float().max(dim=-1).values


class Energy(OODScore):
    """Negative free energy (Liu et al., NeurIPS 2020): ``T * logsumexp(cos / T)``.

    Args:
        temperature: the temperature ``T``.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def __call__(self, cosine: Tensor) -> Tensor:
        return self.temperature * torch.logsumexp(cosine.float() / self.temperature, dim=-1)


class ThresholdRule:
    """Base class: ``threshold(scores) -> float``; an image whose score is below it is called unknown."""

    def threshold(self, scores: Tensor) -> float:
        raise NotImplementedError  # pragma: no cover - interface


class FixedThreshold(ThresholdRule):
    """A threshold chosen by the user (its meaning depends on the score: MSP lies in [1/K, 1]).

    Args:
        value: the threshold.
    """

    def __init__(self, value: float) -> None:
        self.value = value

    def threshold(self, scores: Tensor) -> float:
        return float(self.value)


class UnknownShare(ThresholdRule):
    """The score quantile that calls the assumed share of images unknown.

    Args:
        share: the share of unknown images assumed in the data, in [0, 1).
    """

    def __init__(self, share: float) -> None:
        if not 0.0 <= share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {share}")
        self.share = share

    def threshold(self, scores: Tensor) -> float:
        if self.share == 0.0:
            return float("-inf")
        return float(torch.quantile(scores.double(), self.share))


class HistogramSplit(ThresholdRule):
    """Splits the score histogram into a low (unknown) and a high (known) group where the between-group variance
    is largest (Otsu's method, on ``bins`` equal-width bins): no assumed unknown share, no labels. It always finds
    two groups, so on data without unknown images it still calls the lowest-scoring group unknown.

    Args:
        bins: number of histogram bins.
    """

    def __init__(self, bins: int = 256) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        self.bins = bins

    def threshold(self, scores: Tensor) -> float:
        scores = scores.double().flatten()
        low, high = float(scores.min()), float(scores.max())
        if not low < high:
            return low
        counts = torch.histc(scores, bins=self.bins, min=low, max=high)
        centers = low + (torch.arange(self.bins, dtype=torch.float64) + 0.5) * (high - low) / self.bins
        weight_low = counts.cumsum(0)[:-1]  # samples in bins 0..i, for a cut after bin i
        weight_high = counts.sum() - weight_low
        mass = (counts * centers).cumsum(0)[:-1]
        mean_low = mass / weight_low.clamp(min=1)
        mean_high = ((counts * centers).sum() - mass) / weight_high.clamp(min=1)
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
        # Every cut inside an empty gap separates the same groups: take the middle of the best ones.
        best = (between >= between.max() * (1 - 1e-9)).nonzero().squeeze(1)
        cut = (float(best[0]) + float(best[-1])) / 2
        return low + (cut + 1) * (high - low) / self.bins


def unknown_threshold(cosine: Tensor, score: OODScore, rule: ThresholdRule) -> float:
    """The threshold ``rule`` picks from the ``score`` of every readable row of ``cosine`` (N, K; an unreadable
    image's row is NaN): ``uft predict``'s, and ``uft export``'s, from the target set."""
    return rule.threshold(score(cosine[~cosine.isnan().any(dim=1)]))


def open_set_decision(cosine: Tensor, score: OODScore, threshold: float) -> dict[str, Tensor]:
    """What ``uft predict`` says of each image from its cosine similarities (N, K): ``pred_id`` (the top class,
    or -1, unknown, where the score is below ``threshold``), ``score``, ``known_prob`` (softmax probability of the
    top class at temperature 1) and ``top5`` class ids. The score is compared in float64, as evaluation decides: a
    float32 comparison would round the threshold first."""
    probs = torch.softmax(cosine, dim=-1)
    scores = score(cosine)
    known_prob, top = probs.max(dim=-1)
    pred = torch.where(scores.double() >= threshold, top, torch.full_like(top, -1))
    top5 = probs.topk(min(5, probs.shape[1]), dim=-1).indices
    return {"pred_id": pred, "score": scores, "known_prob": known_prob, "top5": top5}
