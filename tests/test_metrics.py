"""Tests of OpenSetMetrics against scikit-learn and the plain formulas of :mod:`tests.reference`, in one process and
under torch.distributed (gloo, CPU)."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import average_precision_score, balanced_accuracy_score
from torchmetrics.classification import MulticlassCalibrationError

from uft.metrics import (
    DECISION_NAMES,
    EXTRA_NAMES,
    METRIC_NAMES,
    OpenSetMetrics,
    average_precision,
    calibration_bins,
    expected_calibration_error,
    open_set_classification_rate,
)

from .processes import free_port
from .reference import detection_extras_ref, extra_metrics_ref, open_set_metrics_ref, oscr_ref

TOL = 1e-6


def assert_metrics_close(got: dict[str, float], expected: dict[str, float], tol: float = TOL) -> None:
    """Same keys; each value of ``expected`` equal within ``tol`` (relative for the NLL, unbounded), or both NaN."""
    assert set(got) == {*METRIC_NAMES, *DECISION_NAMES, *EXTRA_NAMES, "samples"}
    checked = [name for name in (*METRIC_NAMES, *EXTRA_NAMES) if name in expected]
    assert set(METRIC_NAMES) <= set(checked)
    for name in checked:
        assert isinstance(got[name], float), name
        if math.isnan(expected[name]):
            assert math.isnan(got[name]), f"{name}: expected NaN, got {got[name]}"
        elif name == "nll":  # stored as float32 log-probabilities: relative precision
            assert got[name] == pytest.approx(expected[name], rel=tol, abs=tol), name
        else:
            assert got[name] == pytest.approx(expected[name], abs=tol), name


def reference(logits: torch.Tensor, labels: torch.Tensor, num_known: int, logit_scale: float = 100.0) -> dict:
    """Every metric's reference: scikit-learn's five, and ECE, NLL, OSCR and AUPR from their formulas."""
    return {
        **open_set_metrics_ref(logits, labels, num_known),
        **extra_metrics_ref(logits, labels, num_known, logit_scale),
    }


def compute_once(
    logits: torch.Tensor, labels: torch.Tensor, num_known: int, logit_scale: float = 100.0
) -> dict[str, float]:
    """One metric, one update, one compute."""
    metric = OpenSetMetrics(num_known, logit_scale=logit_scale)
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
    expected = reference(logits, labels, num_known)
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
    assert_metrics_close(got, reference(logits, labels, 4))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_sklearn_with_tied_scores(seed):
    """Heavy ties in the MSP scores: AUROC counts ties one half and FPR95 accepts a whole tie group."""
    logits, labels = tied_data(seed, 300)
    msp = torch.softmax(logits, -1).max(-1).values
    assert msp.unique().numel() <= 5
    expected = reference(logits, labels, 4)
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
    assert_metrics_close(got, reference(logits, labels, 3))


def test_perfect_separation():
    """Knowns all more confident than unknowns: AUROC 1 and FPR95 0."""
    logits = torch.cat([torch.eye(3).repeat(4, 1) * 5.0, torch.zeros(6, 3) + torch.arange(6)[:, None] * 0.01])
    labels = torch.cat([torch.arange(3).repeat(4), torch.full((6,), 3)])
    got = compute_once(logits, labels, 3)
    assert got["auroc"] == pytest.approx(1.0, abs=TOL)
    assert got["fpr95"] == pytest.approx(0.0, abs=TOL)
    assert got["pacc"] == pytest.approx(1.0, abs=TOL)
    assert_metrics_close(got, reference(logits, labels, 3))


@pytest.mark.parametrize("num_pos", [19, 20, 21, 40, 60, 100, 140])
def test_fpr95_at_tpr_boundary(num_pos):
    """FPR95 when 95% of the positives is (or is not) a whole number of samples, distinct scores."""
    gen = torch.Generator().manual_seed(num_pos)
    logits = torch.randn(num_pos + 30, 3, generator=gen) * 2
    labels = torch.cat([torch.zeros(num_pos, dtype=torch.long), torch.full((30,), 3)])
    assert_metrics_close(compute_once(logits, labels, 3), reference(logits, labels, 3))


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
    assert_metrics_close(batched, reference(logits, labels, 6))


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
    assert_metrics_close(after, reference(second_logits, second_labels, 4))


def test_closed_set_gives_nan_detection_metrics():
    """Without unknown samples auroc, fpr95, hm, oscr and the AUPRs are NaN while pacc, gacc, ece and nll are still
    right."""
    logits, labels = random_data(10, 150, 5, unknown_frac=0.0)
    assert (labels < 5).all()
    got = compute_once(logits, labels, 5)
    for name in ("auroc", "fpr95", "hm", "oscr", "aupr_in", "aupr_out"):
        assert math.isnan(got[name]), name
    assert 0 < got["pacc"] < 1 and 0 < got["ece"] < 1 and got["nll"] > 0
    assert_metrics_close(got, reference(logits, labels, 5))


def test_all_unknown_gives_nan():
    """Without known samples every metric is NaN."""
    logits = torch.randn(20, 3, generator=torch.Generator().manual_seed(11))
    got = compute_once(logits, torch.full((20,), 3), 3)
    assert all(math.isnan(got[name]) for name in (*METRIC_NAMES, *EXTRA_NAMES))


def test_no_sample_gives_nan():
    """Without any update every metric is NaN and the count 0."""
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics' own warning
        got = OpenSetMetrics(3).compute()
    assert got["samples"] == 0 and all(math.isnan(got[n]) for n in (*METRIC_NAMES, *DECISION_NAMES, *EXTRA_NAMES))


def test_float64_and_half_logits():
    """Logits of other dtypes are scored through a float32 softmax, like the reference."""
    logits, labels = random_data(12, 100, 4)
    expected = reference(logits, labels, 4)
    assert_metrics_close(compute_once(logits.double(), labels, 4), expected)
    half = logits.half()
    assert_metrics_close(compute_once(half, labels, 4), reference(half, labels, 4))


@pytest.mark.parametrize("shape", [(10, 4), (10, 6), (10,)])
def test_wrong_number_of_classes_raises(shape):
    """Scores over a number of classes other than num_known raise ValueError."""
    metric = OpenSetMetrics(5)
    with pytest.raises(ValueError):
        metric.update(torch.randn(*shape), torch.zeros(10, dtype=torch.long))


DIST_SEED, DIST_N, DIST_K, DIST_SCALE = 21, 301, 5, 37.0


def _distributed_worker(rank: int, world_size: int, port: int, out_dir: str, split: list[int]) -> None:
    """Update with this rank's shard, compute the synced metrics, write them to out_dir/rank{rank}.json."""
    url = f"tcp://127.0.0.1:{port}"
    dist.init_process_group("gloo", init_method=url, rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    try:
        logits, labels = random_data(DIST_SEED, DIST_N, DIST_K)
        metric = OpenSetMetrics(DIST_K, logit_scale=DIST_SCALE)
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
    the data (ECE and NLL at a training scale other than the default). The process group's 60 s timeout turns a
    stalled collective into a failure."""
    mp.spawn(_distributed_worker, args=(2, free_port(), str(tmp_path), split), nprocs=2, join=True)
    logits, labels = random_data(DIST_SEED, DIST_N, DIST_K)
    single = compute_once(logits, labels, DIST_K, DIST_SCALE)
    shard = compute_once(logits[:120], labels[:120], DIST_K, DIST_SCALE)
    for name in ("auroc", *EXTRA_NAMES):  # a rank that did not sync would fail below
        assert abs(shard[name] - single[name]) > 1e-4, name
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert_metrics_close(got, single, tol=1e-12)
        assert got["oscr"] == single["oscr"]
    assert_metrics_close(single, reference(logits, labels, DIST_K, DIST_SCALE))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_are_refused(bad):
    """NaN would sort as the highest score and make a perfect detector; the metric refuses it."""
    logits, labels = random_data(0, 20, 5)
    logits[3, 1] = bad
    with pytest.raises(ValueError, match="scores must be finite"):
        OpenSetMetrics(5).update(logits, labels)


# ---------------------------------------------------------------------------------------- calibration, OSCR, AUPR


def cosine_data(seed: int, n: int, num_known: int, unknown_frac: float = 0.3):
    """Cosine similarities as CLIP gives them (about 0.22, a few hundredths apart), from :func:`random_data`."""
    logits, labels = random_data(seed, n, num_known, unknown_frac=unknown_frac)
    return 0.22 + 0.02 * logits, labels


@pytest.mark.parametrize("logit_scale", [100.0, 37.0, 1.0])
@pytest.mark.parametrize(("seed", "n", "num_known"), [(0, 200, 5), (1, 57, 3), (2, 500, 10), (3, 40, 2), (4, 700, 7)])
def test_extra_metrics_match_references_random(seed, n, num_known, logit_scale):
    """ECE and NLL equal their formulas at the given scale, AUPR-in/out scikit-learn's average precision, and OSCR its
    pairwise form exactly, on random cosines."""
    cosine, labels = cosine_data(seed, n, num_known)
    expected = reference(cosine, labels, num_known, logit_scale)
    got = compute_once(cosine, labels, num_known, logit_scale)
    assert_metrics_close(got, expected)
    assert got["oscr"] == expected["oscr"]
    assert 0 < got["oscr"] < got["gacc"] and 0 < got["ece"] < 1 and got["nll"] > 0
    assert 0 < got["aupr_in"] < 1 and 0 < got["aupr_out"] < 1


@pytest.mark.parametrize("logit_scale", [100.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_extra_metrics_match_references_with_tied_scores(seed, logit_scale):
    """Heavy ties in the MSP scores (and in the confidences): OSCR counts a tie between a correct known and an unknown
    one half, exactly as its pairwise form; the AUPRs accept a tie group at once, as scikit-learn does."""
    logits, labels = tied_data(seed, 300)
    expected = reference(logits, labels, 4, logit_scale)
    got = compute_once(logits, labels, 4, logit_scale)
    assert_metrics_close(got, expected)
    assert got["oscr"] == expected["oscr"]
    # Ties matter here: counted as a win (or a loss) the OSCR would differ.
    msp, known = torch.softmax(logits, -1).max(-1).values.double(), labels < 4
    correct = known & (logits.argmax(-1) == labels)
    tied_pairs = (msp[correct][:, None] == msp[~known][None, :]).sum()
    assert tied_pairs > 0


@pytest.mark.parametrize(("seed", "n", "levels"), [(0, 200, 5), (1, 300, 3), (2, 50, 2), (3, 400, 9), (4, 120, 1)])
def test_oscr_and_aupr_on_rounded_scores(seed, n, levels):
    """The functional core on scores rounded to a few values: OSCR equals the pairwise form exactly, the AUPRs
    scikit-learn's."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n,), generator=gen).double() / max(levels - 1, 1)
    known = torch.rand(n, generator=gen) < 0.6
    correct = known & (torch.rand(n, generator=gen) < 0.7)
    expected = detection_extras_ref(scores, correct, known)
    assert open_set_classification_rate(scores, correct, known) == expected["oscr"]
    assert average_precision(scores, known) == pytest.approx(expected["aupr_in"], abs=1e-12)
    assert average_precision(-scores, ~known) == pytest.approx(expected["aupr_out"], abs=1e-12)
    assert average_precision(scores, known) == pytest.approx(average_precision_score(known, scores), abs=1e-12)


def test_oscr_by_hand():
    """Correct knowns at 0.9 and 0.5, a wrong known at 0.7, unknowns at 0.8, 0.5 and 0.1. The curve (FPR, CCR) runs
    (0, 0) -> (0, 1/3) -> (1/3, 1/3) -> (2/3, 2/3) (the tie at 0.5: one diagonal step) -> (1, 2/3): area
    1/9 + 1/6 + 2/9 = 1/2; pairwise, (3 + 0 + 1/2 + 1) / 9 = 1/2."""
    scores = torch.tensor([0.9, 0.5, 0.7, 0.8, 0.5, 0.1])
    known = torch.tensor([True, True, True, False, False, False])
    correct = torch.tensor([True, True, False, False, False, False])
    assert open_set_classification_rate(scores, correct, known) == 0.5 == oscr_ref(scores, correct, known)
    # Without any correct known the curve is flat at 0; without unknowns (or knowns) it is undefined.
    assert open_set_classification_rate(scores, torch.zeros(6, dtype=torch.bool), known) == 0.0
    assert math.isnan(open_set_classification_rate(scores[:3], correct[:3], known[:3]))
    assert math.isnan(open_set_classification_rate(scores[3:], correct[3:], known[3:]))


def test_average_precision_by_hand():
    """Positives at 0.9 and 0.5, negatives at 0.7 and 0.5: the tie at 0.5 is accepted whole. AP = 1/2 x 1 + 1/2 x
    2/4; NaN without positives or without negatives."""
    scores = torch.tensor([0.9, 0.5, 0.7, 0.5])
    positive = torch.tensor([True, True, False, False])
    assert average_precision(scores, positive) == 0.75
    assert math.isnan(average_precision(scores, torch.zeros(4, dtype=torch.bool)))
    assert math.isnan(average_precision(scores, torch.ones(4, dtype=torch.bool)))


def test_calibration_bins_are_closed_on_the_right():
    """Bins ((b - 1) / M, b / M] (Guo et al.): with 4 bins (exact edges) a confidence of 0.5 is in the second bin,
    one just above it in the third, and a confidence of exactly 1 in the last (torchmetrics puts it in a bin of its
    own, beyond the last, and gives another ECE)."""
    confidence = torch.tensor([0.5, 0.5 + 1e-9, 1.0, 0.9, 0.3], dtype=torch.float64)
    correct = torch.tensor([True, False, False, True, True])
    counts, accuracy, mean_confidence = calibration_bins(confidence, correct, 4)
    assert counts.tolist() == [0, 2, 1, 2]
    assert math.isnan(accuracy[0]) and accuracy[1:].tolist() == [1.0, 0.0, 0.5]
    assert mean_confidence[3] == pytest.approx(0.95, abs=1e-12)
    ece = (abs(2 - 0.8) + abs(0 - (0.5 + 1e-9)) + abs(1 - 1.9)) / 5  # |hits - sum of confidences| per bin
    assert expected_calibration_error(confidence, correct, 4) == pytest.approx(ece, abs=1e-12)
    top, right = torch.tensor([1.0, 0.95], dtype=torch.float64), torch.tensor([False, True])
    assert expected_calibration_error(top, right, 15) == pytest.approx(abs(1 - 1.95) / 2, abs=1e-12)  # one bin
    probs = torch.stack([top, 1 - top], dim=1).float()
    theirs = MulticlassCalibrationError(num_classes=2, n_bins=15)(probs, torch.tensor([1, 0]))
    assert float(theirs) == pytest.approx((1 + 0.05) / 2, abs=1e-6)  # 1.0 alone in its own bin
    assert math.isnan(expected_calibration_error(torch.zeros(0), torch.zeros(0, dtype=torch.bool)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_torchmetrics_without_confidence_one(seed):
    """Where no confidence is exactly 1 (their last bin differs) and none on a bin edge, the ECE of the known samples
    equals torchmetrics' MulticlassCalibrationError on the same probabilities."""
    cosine, labels = cosine_data(seed, 400, 6)
    metric = OpenSetMetrics(6, logit_scale=37.0)
    metric.update(cosine, labels)
    got = metric.compute()
    known = labels < 6
    probs = torch.softmax(37.0 * cosine[known].double(), dim=-1)
    assert (probs.max(-1).values < 1).all()
    theirs = MulticlassCalibrationError(num_classes=6, n_bins=15)(probs, labels[known])
    assert got["ece"] == pytest.approx(float(theirs), abs=1e-6)


def test_ece_and_nll_use_the_logit_scale():
    """The same cosines at another training scale give another ECE and NLL (each its formula's at that scale), and
    the same ranking metrics; ``last`` holds each sample's confidence and true-class log-probability at that scale."""
    cosine, labels = cosine_data(5, 300, 5)
    at = {scale: compute_once(cosine, labels, 5, scale) for scale in (100.0, 50.0, 1.0)}
    for scale, got in at.items():
        assert_metrics_close(got, reference(cosine, labels, 5, scale))
    for name in ("ece", "nll"):
        assert len({round(got[name], 6) for got in at.values()}) == 3, name
    for name in ("pacc", "auroc", "fpr95", "oscr", "aupr_in", "aupr_out", "threshold"):
        assert at[100.0][name] == at[1.0][name], name
    # At temperature 1 the softmax over cosines is almost uniform: a confidence near 1/K, not the model's.
    assert at[1.0]["ece"] > at[100.0]["ece"]

    metric = OpenSetMetrics(5, logit_scale=50.0)
    metric.update(cosine, labels)
    metric.compute()
    log_probs = torch.log_softmax(50.0 * cosine.double(), dim=-1)
    torch.testing.assert_close(metric.last["confidence"], log_probs.max(-1).values.exp().float())
    known = labels < 5
    true = log_probs[known].gather(1, labels[known][:, None]).squeeze(1).float()
    torch.testing.assert_close(metric.last["true_logprob"][known], true)
    assert metric.last["true_logprob"][~known].isnan().all() and metric.last["bins"] == 15


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_logit_scale_is_refused(bad):
    with pytest.raises(ValueError, match="logit_scale must be positive"):
        OpenSetMetrics(5, logit_scale=bad)
