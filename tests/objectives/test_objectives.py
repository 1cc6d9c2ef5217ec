"""Tests of the UEO objective against an independent float64 hand computation (:mod:`tests.reference`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from uft.objectives import UEO

from ..reference import confidence_ref, fd_grad, ueo_ref


def random_case(seed: int, n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 logits of scale ~5 and confidence weights in (1/k, 1]."""
    gen = torch.Generator().manual_seed(seed)
    logits = 5.0 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    weights = 1.0 / k + (1.0 - 1.0 / k) * torch.rand(n, generator=gen, dtype=torch.float64)
    return logits, weights


CASES = [(0, 8, 3), (1, 16, 5), (2, 4, 10), (3, 32, 2), (4, 1, 4)]
TRADES = [0.0, 0.5, 1.0, 2.0]


def test_ueo_is_module():
    """UEO is an nn.Module and asks for a confidence table."""
    loss = UEO(trade=1.0)
    assert isinstance(loss, nn.Module)
    assert loss.needs_table


@pytest.mark.parametrize("trade", TRADES)
@pytest.mark.parametrize(("seed", "n", "k"), CASES)
def test_ueo_value_matches_reference(seed, n, k, trade):
    """The loss value equals the hand computation to 1e-6, as a 0-dim tensor."""
    logits, weights = random_case(seed, n, k)
    loss = UEO(trade=trade)(logits, weights)
    assert loss.dim() == 0
    assert loss.dtype == torch.float64
    expected = ueo_ref(logits.numpy(), weights.numpy(), trade)
    assert loss.item() == pytest.approx(expected, abs=1e-6, rel=1e-6)


@pytest.mark.parametrize("trade", TRADES)
@pytest.mark.parametrize(("seed", "n", "k"), [(10, 6, 3), (11, 5, 7), (12, 3, 2)])
def test_ueo_gradient_matches_finite_differences(seed, n, k, trade):
    """Autograd gradient w.r.t. the logits equals a central finite difference of the reference."""
    logits, weights = random_case(seed, n, k)
    logits = (logits / 5.0).requires_grad_(True)  # moderate logits keep the finite difference well conditioned
    UEO(trade=trade)(logits, weights).backward()
    expected = fd_grad(lambda x: ueo_ref(x, weights.numpy(), trade), logits.detach().numpy())
    np.testing.assert_allclose(logits.grad.numpy(), expected, atol=1e-5, rtol=1e-5)


def test_ueo_trade_changes_value():
    """The marginal term actually contributes: trade=1 and trade=0 differ by exactly H(marginal)."""
    logits, weights = random_case(5, 10, 4)
    diff = UEO(trade=0.0)(logits, weights) - UEO(trade=1.0)(logits, weights)
    expected = ueo_ref(logits.numpy(), weights.numpy(), 0.0) - ueo_ref(logits.numpy(), weights.numpy(), 1.0)
    assert expected > 0.1
    assert diff.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 1e3])
def test_ueo_invariant_to_weight_scale(scale):
    """Multiplying all weights by a constant leaves the loss unchanged."""
    logits, weights = random_case(6, 12, 5)
    loss = UEO(trade=1.5)
    torch.testing.assert_close(loss(logits, scale * weights), loss(logits, weights), atol=1e-12, rtol=1e-12)


def test_ueo_weights_matter():
    """Non-uniform weights change the loss (the weights are really used)."""
    logits, weights = random_case(7, 12, 5)
    loss = UEO(trade=1.0)
    assert abs(loss(logits, weights).item() - loss(logits, torch.ones_like(weights)).item()) > 1e-4


def test_ueo_float32_weights_with_float64_logits():
    """Weights of another dtype are cast to the logits' dtype."""
    logits, weights = random_case(8, 7, 3)
    expected = ueo_ref(logits.numpy(), weights.float().double().numpy(), 1.0)
    assert UEO()(logits, weights.float()).item() == pytest.approx(expected, abs=1e-6)


def test_ueo_missing_weights_raises():
    """UEO without confidence weights raises ValueError."""
    logits, _ = random_case(9, 4, 3)
    with pytest.raises(ValueError):
        UEO()(logits)
    with pytest.raises(ValueError):
        UEO()(logits, None)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_ueo_confidence(tau):
    """confidence(cos) is the maximum softmax probability of cos / tau."""
    gen = torch.Generator().manual_seed(13)
    cosine = 2 * torch.rand(9, 6, generator=gen, dtype=torch.float64) - 1
    objective = UEO(tau=tau) if tau != 1.0 else UEO()
    got = objective.confidence(cosine)
    assert got.shape == (9,)
    np.testing.assert_allclose(got.numpy(), confidence_ref(cosine.numpy(), tau), atol=1e-12, rtol=1e-12)


def test_ueo_confidence_depends_on_tau():
    """A smaller temperature gives strictly larger confidences on non-uniform rows."""
    gen = torch.Generator().manual_seed(14)
    cosine = torch.rand(5, 4, generator=gen, dtype=torch.float64)
    assert (UEO(tau=0.5).confidence(cosine) > UEO(tau=1.0).confidence(cosine)).all()
