"""Tests of OpenSetMetrics against scikit-learn, in one process and under torch.distributed (gloo, CPU)."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import balanced_accuracy_score

from uft.metrics import DECISION_NAMES, METRIC_NAMES, OpenSetMetrics

from .processes import free_port
from .reference import open_set_metrics_ref

TOL = 1e-6


def assert_metrics_close(got: dict[str, float], expected: dict[str, float], tol: float = TOL) -> None:
    """Same keys; each value equal within ``tol``, or both NaN."""
    assert set(got) == {*METRIC_NAMES, *DECISION_NAMES, "samples"}
    for name in METRIC_NAMES:
        assert isinstance(got[name], float), name
        if math.isnan(expected[name]):
            assert math.isnan(got[name]), f"{name}: expected NaN, got {got[name]}"
        else:
            assert got[name] == pytest.approx(expected[name], abs=tol), name


def compute_once(logits: torch.Tensor, labels: torch.Tensor, num_known: int) -> dict[str, float]:
    """One metric, one update, one compute."""
    metric = OpenSetMetrics(num_known)
    metric.update(logits, labels)
    return metric.compute()


def random_data(seed: int, n: int, num_known: int, num_unknown: int = 3, unknown_frac: float = 0.3):
    """Random logits where known samples tend to score higher on their own class, and open-set labels."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_known, (n,), generator=gen)
    is_unknown = torch.rand(n, generator=gen) < unknown_frac
    labels[is_unknown] = num_known + torch.randint(0, num_unknown, (int(is_unknown.sum()),), generator=gen)
    logits = torch.randn(n, num_known, generator=gen)
    boost = 2.0 * torch.rand(n, generator=gen)
    known_idx = (~is_unknown).nonzero().squeeze(1)
    logits[known_idx, labels[known_idx]] += boost[known_idx]
    return logits, labels


def tied_data(seed: int, n: int):
    """Logits over 4 known classes drawn from 5 fixed rows, so the MSP scores take only a handful of tied values."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(
        [[3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.5], [0.5, 0.0, 0.0, 0.0]]
    )
    labels = torch.randint(0, 6, (n,), generator=gen)  # labels 4 and 5 are unknown
    known = labels < 4
    # Knowns favour the confident rows, unknowns the unconfident ones.
    weights = torch.where(
        known[:, None], torch.tensor([5.0, 3.0, 4.0, 0.05, 0.05]), torch.tensor([1.0, 3.0, 1.0, 4.0, 3.0])
    )
    rows = torch.multinomial(weights, 1, generator=gen).squeeze(1)
    return pool[rows].clone(), labels


@pytest.mark.parametrize(("seed", "n", "num_known"), [(0, 200, 5), (1, 57, 3), (2, 500, 10), (3, 40, 2), (4, 1000, 7)])
def test_matches_sklearn_random(seed, n, num_known):
    """pacc, gacc, auroc, fpr95 and hm equal scikit-learn's on random data."""
    logits, labels = random_data(seed, n, num_known)
    expected = open_set_metrics_ref(logits, labels, num_known)
    assert 0 < expected["auroc"] < 1 and 0 < expected["fpr95"] < 1
    assert_metrics_close(compute_once(logits, labels, num_known), expected)


def test_pacc_differs_from_gacc_with_imbalance():
    """pacc averages per class (matches sklearn's balanced accuracy), unlike gacc, on imbalanced classes."""
    logits, labels = random_data(5, 300, 4)
    labels[labels == 1] = 0  # class 0 gets many samples, class 1 none: absent classes are skipped
    got = compute_once(logits, labels, 4)
    known = labels < 4
    preds = torch.softmax(logits, -1).argmax(-1)
    assert got["pacc"] == pytest.approx(balanced_accuracy_score(labels[known].numpy(), preds[known].numpy()), abs=TOL)
    assert abs(got["pacc"] - got["gacc"]) > 1e-3
    assert_metrics_close(got, open_set_metrics_ref(logits, labels, 4))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_sklearn_with_tied_scores(seed):
    """Heavy ties in the MSP scores: AUROC counts ties one half and FPR95 accepts a whole tie group."""
    logits, labels = tied_data(seed, 300)
    msp = torch.softmax(logits, -1).max(-1).values
    assert msp.unique().numel() <= 5
    expected = open_set_metrics_ref(logits, labels, 4)
    assert 0 < expected["fpr95"] < 1
    assert_metrics_close(compute_once(logits, labels, 4), expected)


def test_identical_rows():
    """All scores equal: AUROC is 1/2 and every unknown is accepted at 95% TPR."""
    logits = torch.tensor([[0.3, 1.2, -0.4]]).repeat(50, 1)
    labels = torch.arange(50) % 5  # classes 3 and 4 are unknown
    got = compute_once(logits, labels, 3)
    assert got["auroc"] == pytest.approx(0.5, abs=TOL)
    assert got["fpr95"] == pytest.approx(1.0, abs=TOL)
    assert got["gacc"] == pytest.approx(10 / 30, abs=TOL)  # only class 1 is predicted
    assert got["pacc"] == pytest.approx(1 / 3, abs=TOL)
    assert_metrics_close(got, open_set_metrics_ref(logits, labels, 3))


def test_perfect_separation():
    """Knowns all more confident than unknowns: AUROC 1 and FPR95 0."""
    logits = torch.cat([torch.eye(3).repeat(4, 1) * 5.0, torch.zeros(6, 3) + torch.arange(6)[:, None] * 0.01])
    labels = torch.cat([torch.arange(3).repeat(4), torch.full((6,), 3)])
    got = compute_once(logits, labels, 3)
    assert got["auroc"] == pytest.approx(1.0, abs=TOL)
    assert got["fpr95"] == pytest.approx(0.0, abs=TOL)
    assert got["pacc"] == pytest.approx(1.0, abs=TOL)
    assert_metrics_close(got, open_set_metrics_ref(logits, labels, 3))


@pytest.mark.parametrize("num_pos", [19, 20, 21, 40, 60, 100, 140])
def test_fpr95_at_tpr_boundary(num_pos):
    """FPR95 when 95% of the positives is (or is not) a whole number of samples, distinct scores."""
    gen = torch.Generator().manual_seed(num_pos)
    logits = torch.randn(num_pos + 30, 3, generator=gen) * 2
    labels = torch.cat([torch.zeros(num_pos, dtype=torch.long), torch.full((30,), 3)])
    assert_metrics_close(compute_once(logits, labels, 3), open_set_metrics_ref(logits, labels, 3))


def test_batched_updates_equal_single_update():
    """Several uneven update batches give the same result as one update over everything."""
    logits, labels = random_data(7, 301, 6)
    metric = OpenSetMetrics(6)
    for chunk_logits, chunk_labels in zip(
        logits.split([1, 50, 100, 150]), labels.split([1, 50, 100, 150]), strict=True
    ):
        metric.update(chunk_logits, chunk_labels)
    batched = metric.compute()
    assert_metrics_close(batched, compute_once(logits, labels, 6), tol=1e-12)
    assert_metrics_close(batched, open_set_metrics_ref(logits, labels, 6))


def test_reset_forgets_previous_updates():
    """After reset() only the updates that follow count."""
    first_logits, first_labels = random_data(8, 120, 4)
    second_logits, second_labels = random_data(9, 80, 4)
    metric = OpenSetMetrics(4)
    metric.update(first_logits, first_labels)
    before = metric.compute()
    metric.reset()
    metric.update(second_logits, second_labels)
    after = metric.compute()
    assert before["pacc"] != after["pacc"]
    assert_metrics_close(after, open_set_metrics_ref(second_logits, second_labels, 4))


def test_closed_set_gives_nan_detection_metrics():
    """Without unknown samples auroc, fpr95 and hm are NaN while pacc and gacc are still right."""
    logits, labels = random_data(10, 150, 5, unknown_frac=0.0)
    assert (labels < 5).all()
    got = compute_once(logits, labels, 5)
    for name in ("auroc", "fpr95", "hm"):
        assert math.isnan(got[name]), name
    assert 0 < got["pacc"] < 1
    assert_metrics_close(got, open_set_metrics_ref(logits, labels, 5))


def test_all_unknown_gives_nan():
    """Without known samples every metric is NaN."""
    logits = torch.randn(20, 3, generator=torch.Generator().manual_seed(11))
    got = compute_once(logits, torch.full((20,), 3), 3)
    assert all(math.isnan(got[name]) for name in METRIC_NAMES)


def test_float64_and_half_logits():
    """Logits of other dtypes are scored through a float32 softmax, like the reference."""
    logits, labels = random_data(12, 100, 4)
    expected = open_set_metrics_ref(logits, labels, 4)
    assert_metrics_close(compute_once(logits.double(), labels, 4), expected)
    half = logits.half()
    assert_metrics_close(compute_once(half, labels, 4), open_set_metrics_ref(half, labels, 4))


@pytest.mark.parametrize("shape", [(10, 4), (10, 6), (10,)])
def test_wrong_number_of_classes_raises(shape):
    """Scores over a number of classes other than num_known raise ValueError."""
    metric = OpenSetMetrics(5)
    with pytest.raises(ValueError):
        metric.update(torch.randn(*shape), torch.zeros(10, dtype=torch.long))


DIST_SEED, DIST_N, DIST_K = 21, 301, 5


def _distributed_worker(rank: int, world_size: int, port: int, out_dir: str, split: list[int]) -> None:
    """Update with this rank's shard, compute the synced metrics, write them to out_dir/rank{rank}.json."""
    url = f"tcp://127.0.0.1:{port}"
    dist.init_process_group("gloo", init_method=url, rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    try:
        logits, labels = random_data(DIST_SEED, DIST_N, DIST_K)
        metric = OpenSetMetrics(DIST_K)
        if split[rank]:  # a process may get no evaluation batch at all
            metric.update(logits.split(split)[rank], labels.split(split)[rank])
        result = metric.compute()
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            json.dump(result, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("split", [[120, 181], [0, 301]], ids=["uneven", "empty-rank"])
def test_distributed_two_processes_equal_single_process(tmp_path, split):
    """Two gloo ranks, each with its own shard (uneven, or none at all on rank 0), compute the metrics over all
    the data. The process group's 60 s timeout turns a stalled collective into a failure."""
    mp.spawn(_distributed_worker, args=(2, free_port(), str(tmp_path), split), nprocs=2, join=True)
    logits, labels = random_data(DIST_SEED, DIST_N, DIST_K)
    single = compute_once(logits, labels, DIST_K)
    shard = compute_once(logits[:120], labels[:120], DIST_K)
    assert abs(shard["auroc"] - single["auroc"]) > 1e-4  # a rank that did not sync would fail below
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert_metrics_close(got, single, tol=1e-12)
    assert_metrics_close(single, open_set_metrics_ref(logits, labels, DIST_K))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_are_refused(bad):
    """NaN would sort as the highest score and make a perfect detector; the metric refuses it."""
    logits, labels = random_data(0, 20, 5)
    logits[3, 1] = bad
    with pytest.raises(ValueError, match="scores must be finite"):
        OpenSetMetrics(5).update(logits, labels)
