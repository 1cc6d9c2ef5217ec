"""OOD scores against hand computations, the label-free threshold rules on synthetic scores, and the known/unknown
decision metrics of OpenSetMetrics."""

from __future__ import annotations

import math

import pytest
import torch

from uft.metrics import OpenSetMetrics
from uft.scores import MSP, Energy, FixedThreshold, HistogramSplit, MaxLogit, UnknownShare

COSINE = torch.tensor([[0.30, 0.10, 0.20], [0.25, 0.25, 0.05]])


def test_msp_by_hand():
    e = [math.exp(0.30), math.exp(0.10), math.exp(0.20)]
    first = e[0] / sum(e)
    e2 = [math.exp(0.25), math.exp(0.25), math.exp(0.05)]
    second = e2[0] / sum(e2)
    torch.testing.assert_close(MSP()(COSINE), torch.tensor([first, second]))
    t = 0.01  # a sharp temperature: nearly one-hot
    e = [math.exp(0.30 / t), math.exp(0.10 / t), math.exp(0.20 / t)]
    torch.testing.assert_close(MSP(temperature=t)(COSINE)[0], torch.tensor(e[0] / sum(e)))


def test_max_logit_and_energy_by_hand():
    torch.testing.assert_close(MaxLogit()(COSINE), torch.tensor([0.30, 0.25]))
    lse = math.log(math.exp(0.30) + math.exp(0.10) + math.exp(0.20))
    torch.testing.assert_close(Energy()(COSINE)[0], torch.tensor(lse))
    t = 0.5
    lse_t = t * math.log(math.exp(0.25 / t) * 2 + math.exp(0.05 / t))
    torch.testing.assert_close(Energy(temperature=t)(COSINE)[1], torch.tensor(lse_t))
    with pytest.raises(ValueError):
        Energy(temperature=0)


def test_rules_on_synthetic_scores():
    """Two well separated groups: 30 unknown around 0.2, 70 known around 0.8."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.cat([0.2 + 0.03 * torch.randn(30, generator=gen), 0.8 + 0.03 * torch.randn(70, generator=gen)])
    split = HistogramSplit().threshold(scores)
    assert 0.3 < split < 0.7
    assert int((scores < split).sum()) == 30
    share = UnknownShare(0.3).threshold(scores)
    assert int((scores < share).sum()) == 30
    assert UnknownShare(0.0).threshold(scores) == float("-inf")
    assert FixedThreshold(0.5).threshold(scores) == 0.5
    assert HistogramSplit().threshold(torch.full((5,), 0.4)) == pytest.approx(0.4)  # one value: nothing below


def test_decision_metrics_by_hand():
    """Known classes 0 and 1; the fixed threshold 0.6 on MaxLogit accepts scores >= 0.6.

    sample: label, cosine -> prediction, score, accepted
    0: 0, [0.9, 0.1] -> 0, 0.9, yes  (known, right)
    1: 0, [0.5, 0.1] -> 0, 0.5, no   (known, rejected)
    2: 1, [0.2, 0.7] -> 1, 0.7, yes  (known, right)
    3: 1, [0.8, 0.3] -> 0, 0.8, yes  (known, wrong class)
    4: 2, [0.3, 0.4] -> 1, 0.4, no   (unknown, rejected)
    5: 2, [0.7, 0.2] -> 0, 0.7, yes  (unknown, accepted)
    known_acc = mean(1/2, 1/2) = 0.5; unknown_acc = 1/2; hscore = 0.5.
    """
    cosine = torch.tensor([[0.9, 0.1], [0.5, 0.1], [0.2, 0.7], [0.8, 0.3], [0.3, 0.4], [0.7, 0.2]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    metric = OpenSetMetrics(2, score=MaxLogit(), rule=FixedThreshold(0.6))
    metric.update(cosine, labels)
    got = metric.compute()
    assert got["threshold"] == 0.6
    assert got["known_acc"] == pytest.approx(0.5) and got["unknown_acc"] == pytest.approx(0.5)
    assert got["hscore"] == pytest.approx(0.5)
    assert got["pacc"] == pytest.approx(0.75)  # the closed-set accuracy ignores the decision
    # AUROC follows the chosen score: knowns 0.9, 0.5, 0.7, 0.8 vs unknowns 0.4, 0.7 -> pairs won 4 + 2.5 of 8
    assert got["auroc"] == pytest.approx((4 + 2.5) / 8)
