"""Tests of the baseline objectives (ENT, IM, UEOOracle, UPL, POUF) against independent float64 hand computations.

The references (:mod:`tests.reference`) are written with plain python loops and ``math``; gradients are checked
against central finite differences of those references. Entropy convention: ``H(p) = -sum_k p_k log(p_k + 1e-5)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from uft.objectives import ENT, IM, POUF, UEO, UPL, Objective, UEOOracle

from ..reference import (
    ent_ref,
    entropy,
    fd_grad,
    im_ref,
    mean_probs,
    pouf_ref,
    row_probs,
    ueo_ref,
    upl_forward_ref,
    upl_prepare_ref,
)

GRAD_TOL = 1e-5
VALUE_TOL = 1e-9


# ----------------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------------


def rand_logits(seed: int, n: int, k: int, scale: float = 2.0) -> torch.Tensor:
    """Random float64 logits."""
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=gen, dtype=torch.float64)


def rand_cosine(seed: int, n: int, k: int, spread: float = 0.05) -> torch.Tensor:
    """Random float64 CLIP-like cosine similarities around 0.25."""
    gen = torch.Generator().manual_seed(seed)
    return 0.25 + spread * torch.randn(n, k, generator=gen, dtype=torch.float64)


def grad_of(objective: nn.Module, logits: torch.Tensor, **kwargs) -> tuple[float, np.ndarray]:
    """Loss value and autograd gradient w.r.t. the logits."""
    logits = logits.clone().requires_grad_(True)
    loss = objective(logits, **kwargs)
    loss.backward()
    return loss.item(), logits.grad.numpy()


# ----------------------------------------------------------------------------------------------------------------
# interface
# ----------------------------------------------------------------------------------------------------------------

FLAGS = [
    (ENT(), False, False),
    (IM(1.0), False, False),
    (UEOOracle(1.0), True, True),
    (UPL(), True, False),
    (POUF(), False, False),
]


@pytest.mark.parametrize(("objective", "needs_table", "uses_labels"), FLAGS, ids=lambda x: type(x).__name__)
def test_objective_flags(objective, needs_table, uses_labels):
    """Every objective is an nn.Module / Objective with the documented needs_table and uses_labels flags."""
    assert isinstance(objective, nn.Module)
    assert isinstance(objective, Objective)
    assert objective.needs_table is needs_table
    assert objective.uses_labels is uses_labels


def test_objectives_exported():
    """All objectives are exported from uft.objectives."""
    import uft.objectives as objectives

    for name in ["ENT", "IM", "UEO", "UEOOracle", "UPL", "POUF"]:
        assert name in objectives.__all__
        assert issubclass(getattr(objectives, name), nn.Module)


# ----------------------------------------------------------------------------------------------------------------
# ENT
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n", "k"), [(0, 6, 3), (1, 4, 7), (2, 1, 5), (3, 9, 2)])
def test_ent_value_and_gradient(seed, n, k):
    """ENT is mean_i H(p_i) as a 0-dim tensor; its logit gradient matches finite differences of the reference."""
    logits = rand_logits(seed, n, k)
    loss = ENT()(logits)
    assert loss.dim() == 0 and loss.dtype == torch.float64
    value, grad = grad_of(ENT(), logits)
    assert value == pytest.approx(ent_ref(logits.numpy()), abs=VALUE_TOL)
    np.testing.assert_allclose(grad, fd_grad(ent_ref, logits.numpy()), atol=GRAD_TOL, rtol=GRAD_TOL)


def test_ent_ignores_table_and_cosine():
    """ENT gives the same value whatever table or cosine is passed."""
    logits = rand_logits(4, 5, 3)
    expected = ENT()(logits)
    got = ENT()(logits, torch.rand(5, dtype=torch.float64), cosine=rand_cosine(4, 5, 3))
    assert torch.equal(got, expected)


def test_ent_is_sample_level():
    """ENT of a batch is the mean of ENT over its two equal halves (contrast with POUF below)."""
    logits = rand_logits(5, 8, 4)
    halves = (ENT()(logits[:4]) + ENT()(logits[4:])) / 2
    torch.testing.assert_close(ENT()(logits), halves, atol=1e-12, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# IM
# ----------------------------------------------------------------------------------------------------------------

TRADES = [0.0, 0.5, 1.0, 2.5]


@pytest.mark.parametrize("trade", TRADES)
@pytest.mark.parametrize(("seed", "n", "k"), [(10, 6, 3), (11, 5, 6), (12, 3, 2)])
def test_im_value_and_gradient(seed, n, k, trade):
    """IM is mean_i H(p_i) - trade * H(mean_i p_i); its logit gradient matches finite differences."""
    logits = rand_logits(seed, n, k)
    value, grad = grad_of(IM(trade), logits)
    assert value == pytest.approx(im_ref(logits.numpy(), trade), abs=VALUE_TOL)
    expected = fd_grad(lambda x: im_ref(x, trade), logits.numpy())
    np.testing.assert_allclose(grad, expected, atol=GRAD_TOL, rtol=GRAD_TOL)


@pytest.mark.parametrize("trade", TRADES)
def test_im_equals_ueo_with_constant_weights(trade):
    """IM equals UEO with all-one weights bit for bit, and UEO with any constant weight vector to 1e-12."""
    logits = rand_logits(13, 10, 4)
    n = logits.shape[0]
    im = IM(trade)(logits)
    assert torch.equal(im, UEO(trade)(logits, torch.ones(n, dtype=torch.float64)))
    for constant in [1e-3, 0.37, 1.0, 42.0]:
        torch.testing.assert_close(
            im, UEO(trade)(logits, torch.full((n,), constant, dtype=torch.float64)), atol=1e-12, rtol=1e-12
        )


def test_im_trade_is_used():
    """Different trades give values differing by exactly the marginal entropy times the trade difference."""
    logits = rand_logits(14, 8, 5)
    marginal = entropy(mean_probs(row_probs(logits.numpy())))
    assert marginal > 0.1
    diff = IM(0.5)(logits) - IM(2.0)(logits)
    assert diff.item() == pytest.approx(1.5 * marginal, abs=1e-9)


def test_im_ignores_table():
    """IM ignores a passed table (it would change UEO's value) and needs no table."""
    logits = rand_logits(15, 7, 3)
    table = torch.linspace(0.05, 1.0, 7, dtype=torch.float64)
    assert abs(UEO(1.0)(logits, table).item() - IM(1.0)(logits).item()) > 1e-4  # the table would matter to UEO
    assert torch.equal(IM(1.0)(logits, table), IM(1.0)(logits))
    assert torch.equal(IM(1.0)(logits, table=table, cosine=rand_cosine(15, 7, 3)), IM(1.0)(logits))


def test_im_float32_logits():
    """IM works on float32 logits and returns float32."""
    logits = rand_logits(16, 6, 4).float()
    loss = IM(1.0)(logits)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(im_ref(logits.double().numpy(), 1.0), abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# UEOOracle
# ----------------------------------------------------------------------------------------------------------------


def test_oracle_prepare_weights():
    """prepare gives 1 for labels < K and unknown_weight for labels >= K (K = number of cosine columns)."""
    cosine = rand_cosine(20, 7, 4)
    labels = torch.tensor([0, 3, 4, 9, 2, 5, 1])
    weights = UEOOracle(1.0, unknown_weight=0.25).prepare(cosine, labels)  # 0.25 is exact in every float type
    assert weights.shape == (7,)
    assert weights.dtype == torch.float64
    assert weights.tolist() == [1.0, 1.0, 0.25, 0.25, 1.0, 0.25, 1.0]


def test_oracle_prepare_default_unknown_weight():
    """The default unknown_weight is 1e-3 (to float32 precision) and K follows the cosine width."""
    labels = torch.tensor([0, 2, 3, 5])
    weights = UEOOracle().prepare(rand_cosine(21, 4, 3), labels)
    np.testing.assert_allclose(weights.numpy(), [1.0, 1.0, 1e-3, 1e-3], rtol=1e-6)
    weights = UEOOracle().prepare(rand_cosine(21, 4, 4), labels)
    np.testing.assert_allclose(weights.numpy(), [1.0, 1.0, 1.0, 1e-3], rtol=1e-6)


def test_oracle_prepare_keeps_unknown_weight_in_float64():
    """A float64 table holds unknown_weight exactly, and a tiny unknown_weight stays positive (finite loss)."""
    cosine = rand_cosine(22, 3, 2)
    labels = torch.tensor([0, 2, 1])
    assert UEOOracle(unknown_weight=1e-3).prepare(cosine, labels)[1].item() == 1e-3
    oracle = UEOOracle(unknown_weight=1e-50)
    weights = oracle.prepare(cosine, labels)
    assert weights[1].item() == 1e-50
    assert torch.isfinite(oracle(rand_logits(22, 3, 2), weights))


def test_oracle_prepare_needs_labels():
    """prepare without labels raises ValueError."""
    with pytest.raises(ValueError):
        UEOOracle().prepare(rand_cosine(23, 4, 3))
    with pytest.raises(ValueError):
        UEOOracle().prepare(rand_cosine(23, 4, 3), None)


@pytest.mark.parametrize("trade", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("unknown_weight", [1e-3, 0.5])
def test_oracle_value_and_gradient(trade, unknown_weight):
    """Forward with the prepared weights is UEO's formula with w = 1 (known) / unknown_weight (unknown)."""
    n, k = 6, 3
    logits = rand_logits(24, n, k)
    labels = torch.tensor([0, 3, 1, 4, 2, 2])
    weights_ref = [1.0 if int(y) < k else unknown_weight for y in labels]
    oracle = UEOOracle(trade, unknown_weight=unknown_weight)
    table = oracle.prepare(rand_cosine(24, n, k), labels)
    value, grad = grad_of(oracle, logits, weights=table)  # UEO names the table argument "weights"; see below
    assert value == pytest.approx(ueo_ref(logits.numpy(), weights_ref, trade), abs=1e-9)
    expected = fd_grad(lambda x: ueo_ref(x, weights_ref, trade), logits.numpy())
    np.testing.assert_allclose(grad, expected, atol=GRAD_TOL, rtol=GRAD_TOL)
    assert abs(value - IM(trade)(logits).item()) > 1e-4  # the unknown weights really change the loss vs all ones


@pytest.mark.parametrize("objective", [UEO(1.0), UEOOracle(1.0)], ids=lambda x: type(x).__name__)
def test_table_is_the_second_positional_argument(objective):
    """The module passes the table positionally; UEO's public API names that argument ``weights``."""
    logits = rand_logits(26, 4, 3)
    weights = torch.tensor([1.0, 0.5, 1.0, 0.25], dtype=torch.float64)
    assert torch.equal(objective(logits, weights, cosine=None), objective(logits, weights=weights))


def test_oracle_forward_needs_table():
    """Forward without weights raises ValueError (inherited from UEO)."""
    with pytest.raises(ValueError):
        UEOOracle()(rand_logits(25, 3, 2))


# ----------------------------------------------------------------------------------------------------------------
# UPL
# ----------------------------------------------------------------------------------------------------------------


def planted_cosine(seed: int, counts: list[int], k: int) -> torch.Tensor:
    """Cosines whose arg-max class is class c for counts[c] samples (shuffled), with random confidences."""
    gen = torch.Generator().manual_seed(seed)
    targets = torch.cat([torch.full((m,), c) for c, m in enumerate(counts)])
    targets = targets[torch.randperm(len(targets), generator=gen)]
    cosine = 0.2 + 0.03 * torch.rand(len(targets), k, generator=gen, dtype=torch.float64)
    cosine[torch.arange(len(targets)), targets] += 0.03 + 0.05 * torch.rand(len(targets), generator=gen).double()
    return cosine


@pytest.mark.parametrize(
    ("seed", "counts", "k", "top_k", "temperature"),
    [
        (30, [20, 3, 0, 16, 17], 5, 16, 0.01),  # more, fewer, none, exactly top_k, one over
        (31, [5, 0, 9], 3, 4, 0.01),
        (32, [7, 7, 7, 0], 4, 1, 0.05),
        (33, [4, 2, 6], 3, 16, 1.0),  # every class below top_k: everybody kept
    ],
)
def test_upl_prepare_matches_brute_force(seed, counts, k, top_k, temperature):
    """The table is the brute-force per-class top_k selection; class sizes min(top_k, members), empty classes absent."""
    cosine = planted_cosine(seed, counts, k)
    predicted = cosine.argmax(dim=1)
    assert torch.bincount(predicted, minlength=k).tolist() == counts  # the planted class sizes hold
    table = UPL(top_k=top_k, temperature=temperature).prepare(cosine)
    assert table.shape == (len(predicted),)
    assert table.tolist() == upl_prepare_ref(cosine.numpy(), top_k, temperature)
    kept_counts = [int((table == c).sum()) for c in range(k)]
    assert kept_counts == [min(top_k, m) for m in counts]
    assert set(table.tolist()) <= {-1} | {c for c, m in enumerate(counts) if m > 0}


@pytest.mark.parametrize("seed", [34, 35, 36])
def test_upl_prepare_random_cosines(seed):
    """On unplanted random cosines the table matches brute force and only holds each sample's predicted class."""
    cosine = rand_cosine(seed, 60, 6, spread=0.05)
    table = UPL(top_k=4).prepare(cosine)
    assert table.tolist() == upl_prepare_ref(cosine.numpy(), 4, 0.01)
    kept = table != -1
    assert kept.any() and (~kept).any()
    assert torch.equal(table[kept], cosine.argmax(dim=1)[kept])


def test_upl_prepare_temperature_changes_ranking():
    """The ranking uses softmax(cos / temperature): the kept sample depends on the temperature.

    Sample 0 has a small margin to one rival but far-away others; sample 1 a larger margin to three close rivals.
    """
    cosine = torch.tensor([[0.5, 0.47, -1.0, -1.0], [0.5, 0.45, 0.45, 0.45]], dtype=torch.float64)
    assert upl_prepare_ref(cosine.numpy(), 1, 0.01) == [-1, 0]
    assert upl_prepare_ref(cosine.numpy(), 1, 1.0) == [0, -1]
    assert UPL(top_k=1, temperature=0.01).prepare(cosine).tolist() == [-1, 0]
    assert UPL(top_k=1, temperature=1.0).prepare(cosine).tolist() == [0, -1]


def test_upl_prepare_ties_are_deterministic():
    """With exactly tied confidences the table is the same on every call, keeps exactly top_k of the tied samples,
    and prefers them only over strictly less confident ones."""
    row_a = [0.30, 0.20, 0.21]  # class 0, tied five times
    row_b = [0.29, 0.22, 0.21]  # class 0, less confident
    row_c = [0.20, 0.31, 0.25]  # class 1, tied twice
    cosine = torch.tensor([row_b, row_a, row_c, row_a, row_a, row_c, row_a, row_b, row_a], dtype=torch.float64)
    upl = UPL(top_k=3)
    first = upl.prepare(cosine)
    assert torch.equal(first, upl.prepare(cosine))
    assert torch.equal(first, UPL(top_k=3).prepare(cosine.clone()))
    tied = [1, 3, 4, 6, 8]
    assert sum(first[i].item() == 0 for i in tied) == 3
    assert first[0].item() == -1 and first[7].item() == -1  # less confident than every tied sample
    assert first[2].item() == 1 and first[5].item() == 1


def test_upl_prepare_ignores_labels():
    """prepare does not read labels: labels that would change an oracle's table give the same table as None."""
    cosine = planted_cosine(37, [6, 4, 1], 3)
    upl = UPL(top_k=3)
    expected = upl.prepare(cosine)
    predicted = cosine.argmax(dim=1)
    for labels in [(predicted + 1) % 3, torch.zeros_like(predicted), torch.full_like(predicted, 7)]:
        assert torch.equal(upl.prepare(cosine, labels), expected)
        assert torch.equal(upl.prepare(cosine, labels=labels), expected)


@pytest.mark.parametrize("top_k", [0, -3])
def test_upl_rejects_nonpositive_top_k(top_k):
    """top_k below 1 raises ValueError."""
    with pytest.raises(ValueError):
        UPL(top_k=top_k)


@pytest.mark.parametrize(
    "table",
    [[2, -1, 0, 0, -1, 1], [1, 1, 1, 1, 1, 1], [-1, -1, -1, 3, -1, -1]],
)
def test_upl_forward_value_and_gradient(table):
    """Forward is the mean cross-entropy over rows with a label; rows without one get zero gradient."""
    logits = rand_logits(38, 6, 4)
    table_t = torch.tensor(table)
    value, grad = grad_of(UPL(), logits, table=table_t)
    assert value == pytest.approx(upl_forward_ref(logits.numpy(), table), abs=VALUE_TOL)
    expected = fd_grad(lambda x: upl_forward_ref(x, table), logits.numpy())
    np.testing.assert_allclose(grad, expected, atol=GRAD_TOL, rtol=GRAD_TOL)
    for i, label in enumerate(table):
        assert bool(np.abs(grad[i]).max() == 0.0) is (label == -1)


def test_upl_forward_without_kept_samples():
    """A batch with no pseudo-label gives a 0.0 loss that still backpropagates, with an all-zero gradient."""
    logits = rand_logits(39, 5, 3).requires_grad_(True)
    loss = UPL()(logits, torch.full((5,), -1))
    assert loss.dim() == 0
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_upl_forward_needs_table():
    """Forward without a table raises ValueError."""
    with pytest.raises(ValueError):
        UPL()(rand_logits(40, 4, 3))


def test_upl_prepare_then_forward():
    """The prepared table drives forward: the loss is the reference cross-entropy on its kept rows."""
    cosine = planted_cosine(41, [5, 3, 2], 3)
    upl = UPL(top_k=2)
    table = upl.prepare(cosine)
    logits = 100.0 * cosine
    assert upl(logits, table).item() == pytest.approx(upl_forward_ref(logits.numpy(), table.tolist()), abs=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# POUF
# ----------------------------------------------------------------------------------------------------------------

POUF_WEIGHTS = [(0.3, 0.0), (0.0, 0.0), (0.3, 0.3), (1.0, 0.7)]


@pytest.mark.parametrize(("entropy_weight", "diversity_weight"), POUF_WEIGHTS)
def test_pouf_scaled_cosine_logits(entropy_weight, diversity_weight):
    """With logits = 100 * cosine: value, logit gradient (logits as a leaf) and the total cosine gradient."""
    cosine = rand_cosine(50, 5, 3)
    objective = POUF(entropy_weight=entropy_weight, diversity_weight=diversity_weight)
    c = cosine.numpy()

    value, grad = grad_of(objective, 100.0 * cosine, cosine=cosine)
    assert value == pytest.approx(pouf_ref(100.0 * c, c, entropy_weight, diversity_weight), abs=VALUE_TOL)
    expected = fd_grad(lambda x: pouf_ref(x, c, entropy_weight, diversity_weight), 100.0 * c)
    np.testing.assert_allclose(grad, expected, atol=GRAD_TOL, rtol=GRAD_TOL)

    leaf = cosine.clone().requires_grad_(True)
    objective(100.0 * leaf, cosine=leaf).backward()
    expected = fd_grad(lambda x: pouf_ref(100.0 * x, x, entropy_weight, diversity_weight), c)
    np.testing.assert_allclose(leaf.grad.numpy(), expected, atol=GRAD_TOL, rtol=GRAD_TOL)


@pytest.mark.parametrize(("entropy_weight", "diversity_weight"), POUF_WEIGHTS)
@pytest.mark.parametrize(("seed", "n", "k"), [(51, 4, 3), (52, 6, 2), (53, 3, 5)])
def test_pouf_independent_inputs(seed, n, k, entropy_weight, diversity_weight):
    """With independent logits and cosine: value, gradient w.r.t. the logits and w.r.t. the cosine."""
    logits = rand_logits(seed, n, k).requires_grad_(True)
    cosine = 2 * torch.rand(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 1
    cosine.requires_grad_(True)
    objective = POUF(entropy_weight=entropy_weight, diversity_weight=diversity_weight)
    loss = objective(logits, cosine=cosine)
    loss.backward()
    x, c = logits.detach().numpy(), cosine.detach().numpy()
    assert loss.item() == pytest.approx(pouf_ref(x, c, entropy_weight, diversity_weight), abs=VALUE_TOL)
    grad_logits = fd_grad(lambda v: pouf_ref(v, c, entropy_weight, diversity_weight), x)
    grad_cosine = fd_grad(lambda v: pouf_ref(x, v, entropy_weight, diversity_weight), c)
    np.testing.assert_allclose(logits.grad.numpy(), grad_logits, atol=GRAD_TOL, rtol=GRAD_TOL)
    np.testing.assert_allclose(cosine.grad.numpy(), grad_cosine, atol=GRAD_TOL, rtol=GRAD_TOL)


def test_pouf_defaults():
    """Defaults are entropy_weight 0.3 and diversity_weight 0 (checked through the value)."""
    logits, cosine = rand_logits(54, 5, 4), rand_cosine(54, 5, 4)
    expected = pouf_ref(logits.numpy(), cosine.numpy(), 0.3, 0.0)
    assert POUF()(logits, cosine=cosine).item() == pytest.approx(expected, abs=VALUE_TOL)
    assert abs(pouf_ref(logits.numpy(), cosine.numpy(), 0.3, 0.3) - expected) > 1e-3  # diversity would show


def test_pouf_diversity_weight_is_used():
    """Raising diversity_weight by d lowers the loss by d * H(mean_i p_i)."""
    logits, cosine = rand_logits(55, 6, 3), rand_cosine(55, 6, 3)
    marginal = entropy(mean_probs(row_probs(logits.numpy())))
    diff = POUF(diversity_weight=0.0)(logits, cosine=cosine) - POUF(diversity_weight=0.5)(logits, cosine=cosine)
    assert diff.item() == pytest.approx(0.5 * marginal, abs=1e-9)


def test_pouf_needs_cosine():
    """POUF without cosine similarities raises ValueError."""
    logits = rand_logits(56, 4, 3)
    with pytest.raises(ValueError):
        POUF()(logits)
    with pytest.raises(ValueError):
        POUF()(logits, torch.zeros(4), None)


def test_pouf_is_batch_level():
    """POUF is batch-level: the loss of a batch is NOT the mean of the losses of its two equal halves, because the
    class-to-image softmax runs over the batch (the reference agrees on both numbers)."""
    cosine = rand_cosine(57, 8, 3)
    logits = 100.0 * cosine
    objective = POUF()
    whole = objective(logits, cosine=cosine).item()
    halves = (objective(logits[:4], cosine=cosine[:4]).item() + objective(logits[4:], cosine=cosine[4:]).item()) / 2
    c = cosine.numpy()
    assert whole == pytest.approx(pouf_ref(100.0 * c, c), abs=VALUE_TOL)
    assert halves == pytest.approx((pouf_ref(100.0 * c[:4], c[:4]) + pouf_ref(100.0 * c[4:], c[4:])) / 2, abs=1e-9)
    assert abs(whole - halves) > 1e-3
