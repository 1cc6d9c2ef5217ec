"""How close two runs of the same training on different numbers of processes must come: the tolerances of a
1-vs-2-process comparison, with their derivation and measurements, and the agreement of two runs' metrics."""

from __future__ import annotations

import pytest

# Tolerances of a 1-vs-2-process training comparison (equal thread counts, float32, plain SGD at lr 0.01, 6 steps of
# a global batch of 16). The first step's loss comes from the same parameters (measured bit-identical). What differs
# is the order of float32 sums: one process sums the batch's gradient at once, two processes each half of it, then DDP
# averages the halves. That leaves the parameters a few float32 ulps apart (eps = 1.2e-7 at magnitude 1, the norm
# affines' scale; 7.5e-9 at the context's 0.1). Measured after the 6 steps: at most 5.3e-7 (UEO, IM, POUF alike), with
# no growth from step to step (lr 0.01 x 6 steps amplifies nothing). A wrong gradient scale (x2, as a gather that is
# not averaged gives; measured with doubled learning rates, which under SGD is the same update) moves the parameters
# by 2.5e-2 to 6.2e-2 and every loss after the first by 4.6e-2 to 3e-1.
PARAM_ATOL = 1e-5  # ~80 ulps at magnitude 1: 19x the measured 5.3e-7, 2500x below the x2 bug
# A loss sees the parameters through logits = 100 x cosine (logit_scale): a parameter off by ~5e-7 moves a cosine by
# about as much and a logit by ~5e-5 at worst; the entropies' slope in a logit is below 1 and the batch mean averages
# the rows' errors. Measured: at most 2.8e-6 (UEO), 1.1e-6 (IM), 3.6e-7 (POUF) over the 6 losses.
LOSS_ATOL = 1e-4  # ~8 ulps of a cosine x logit scale 100: 35x the measured 2.8e-6, 450x below the x2 bug's 4.6e-2
# UEO's table w_i = max_k softmax_k(cos_ik / tau) (tau = 1) is computed once, from zero-shot forward passes over the
# same batches on 1 and 2 processes (BatchShardSampler deals the 1-process batches), summed over processes (one
# non-zero row, exact). Its slope in a cosine is at most w (1 - w) <= 1/4, so a few ulps of a cosine (|cos| <= 1)
# give a few ulps of w in [0, 1]. Measured: 0 (equal threads). Another image's weight differs by ~1e-3 (the table's
# standard deviation on the tiny model, weights 0.202 to 0.207), a wrong tau by more.
TABLE_ATOL = 1e-6  # ~8 ulps at magnitude 1


def assert_metrics_agree(a: dict, b: dict) -> None:
    """Two metrics.json of the tiny data's test and target splits, from scores that may differ in the last bits:
    the same samples, the same accuracies, the rank metrics within one pair (AUROC) or one unknown image (FPR95)."""
    # (split, images, known-class images, unknown images) with 5 known classes of 8 (test) or 7 (target).
    for split, size, known, unknown in (("test", 32, 20, 12), ("target", 42, 30, 12)):
        assert a[split]["samples"] == b[split]["samples"] == size
        for name, resolution in (("pacc", 0), ("gacc", 0), ("auroc", 1 / (known * unknown)), ("fpr95", 1 / unknown)):
            assert b[split][name] == pytest.approx(a[split][name], abs=resolution + 1e-6), (split, name)
    # The label-free criteria (uft.selection) of the target set, gathered in sample order: cosines a few ulps apart
    # (x the logit scale 100: ~5e-5 in a logit) move an entropy or a similarity by ~1e-5 at most.
    assert a["selection"].keys() == b["selection"].keys() and a["selection"]["snd"] is not None
    for name, value in a["selection"].items():
        other = b["selection"][name]
        assert (value is None) == (other is None), name
        assert value is None or other == pytest.approx(value, abs=1e-4), name
