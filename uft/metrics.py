"""Open-set evaluation metrics as torchmetrics ``Metric``s (correct under several processes by construction).

Under the reference convention the scores passed to ``update`` are the plain cosine similarities between image
and known-class text features (temperature 1), and the out-of-distribution score is the maximum softmax
probability (MSP) over them; another score (:mod:`uft.scores`) can be chosen. Calibration (ECE) and the negative
log-likelihood are of the probabilities the model gives, ``softmax(logit_scale * cosine)`` at its training scale.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from uft.scores import MSP, HistogramSplit, OODScore, ThresholdRule

METRIC_NAMES = ("pacc", "gacc", "auroc", "fpr95", "hm")
DECISION_NAMES = ("known_acc", "unknown_acc", "hscore", "threshold")  # of the known/unknown decision
EXTRA_NAMES = ("ece", "nll", "oscr", "aupr_in", "aupr_out")  # calibration, likelihood, open-set rate, precision
CALIBRATION_BINS = 15  # equal-width confidence bins of the ECE (Guo et al., ICML 2017)


def binary_auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties count one half); NaN when a class is absent."""
    scores = scores.double()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average ranks handle ties exactly: rank of a tie group = mean of the ranks it spans.
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=scores.dtype)
    unique, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(scores.dtype)
    mean_rank = ends - (counts.to(scores.dtype) - 1) / 2
    ranks[order] = mean_rank[inverse]
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fpr_at_tpr(scores: Tensor, positive: Tensor, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold whose true-positive rate reaches ``tpr``; NaN if undefined."""
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    pos_sorted = torch.sort(scores[positive].double(), descending=True).values
    # Accept everything scoring >= the k-th best positive score, k the fewest positives that reach the TPR.
    k = int(torch.ceil(torch.tensor(tpr * n_pos - 1e-9)).item())
    threshold = pos_sorted[max(k, 1) - 1]
    return float((scores[~positive].double() >= threshold).sum().double() / n_neg)


def calibration_bins(
    confidence: Tensor, correct: Tensor, bins: int = CALIBRATION_BINS
) -> tuple[Tensor, Tensor, Tensor]:
    """Sample count, accuracy and mean confidence of each of ``bins`` equal-width confidence bins ``((b - 1) / M,
    b / M]`` (Guo et al., ICML 2017: a confidence of exactly 1 lies in the last bin); accuracy and confidence are
    NaN in an empty bin. Float64, on the inputs' device.

    Args:
        confidence: each sample's confidence in (0, 1] (the probability of its top class).
        correct: whether its top class is its label.
        bins: the number M of bins.
    """
    counts, hits, mass = _bin_sums(confidence, correct, bins)
    return counts, hits / counts, mass / counts


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error (Guo et al., ICML 2017): ``ECE = sum_b |B_b| / n |acc(B_b) - conf(B_b)|`` over the
    bins of :func:`calibration_bins`, summed as ``sum_b |hits_b - sum_{i in B_b} conf_i| / n``; NaN without samples.

    Not torchmetrics' ``MulticlassCalibrationError``, though its states are exact across processes: its bins are
    closed on the left with a confidence of exactly 1 beyond the last one (at CLIP's scale many confidences round to
    1 in float32), it sums in the inputs' dtype, and the functional core also serves recorded predictions, which
    have no ``Metric``.

    Args:
        confidence: each sample's confidence (the probability of its top class).
        correct: whether its top class is its label.
        bins: the number of equal-width bins.
    """
    if confidence.numel() == 0:
        return float("nan")
    _, hits, mass = _bin_sums(confidence, correct, bins)
    return float((hits - mass).abs().sum() / confidence.numel())


def _bin_sums(confidence: Tensor, correct: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per bin of :func:`calibration_bins`: samples, correct samples and the sum of their confidences (float64)."""
    confidence = confidence.double()
    # Edges b / M computed as such (not by linspace), so that a reference written as b / M bins alike.
    edges = torch.arange(bins + 1, dtype=torch.float64, device=confidence.device) / bins
    # right=False: edges[i - 1] < c <= edges[i], bins closed on the right; a confidence of 0 (which a softmax never
    # gives) would count in the first.
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    hits = torch.bincount(index, weights=correct.double(), minlength=bins)
    # The metric's float32 confidences are at least 1/K, multiples of 2**-33 for K <= 1024: their float64 sums are
    # exact below 2**20 samples, so a bin's sum does not depend on the order the processes' samples come in.
    mass = torch.bincount(index, weights=confidence, minlength=bins)
    return counts, hits, mass


def open_set_classification_rate(scores: Tensor, correct: Tensor, known: Tensor) -> float:
    """Open-set classification rate (Dhamija et al., NeurIPS 2018; Vaze et al., ICLR 2022): the area under the curve
    of the correct classification rate ``CCR(t) = |{known i: s_i >= t, pred_i = y_i}| / N_known`` against the false
    positive rate ``FPR(t) = |{unknown j: s_j >= t}| / N_unknown`` as the threshold ``t`` sweeps the scores from the
    highest down: the curve runs from (0, 0) to (1, gacc). Samples with tied scores are accepted together, so a tie
    between correct knowns and unknowns is one diagonal step (a trapezoid). Over the distinct scores ``u_1 > ... >
    u_m``, with ``C_k`` correct knowns and ``U_k`` unknowns scoring ``u_k`` and ``A_k`` correct knowns scoring above
    it, the trapezoids sum to

        OSCR = sum_k U_k (2 A_k + C_k) / (2 N_known N_unknown)
             = sum over (correct known i, unknown j) of ([s_i > s_j] + [s_i = s_j] / 2) / (N_known N_unknown),

    the AUROC of the correct knowns against the unknowns times the fraction of knowns classified right. Computed in
    integers and divided once, so it equals the pairwise form exactly. NaN without knowns or without unknowns.

    Args:
        scores: each sample's OOD score (higher = more likely known).
        correct: whether it is a known sample whose top class is its label.
        known: whether it is a known-class sample.
    """
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    if n_known == 0 or n_unknown == 0:
        return float("nan")
    ranked = correct | ~known  # a wrong known never enters CCR, and no FPR
    values, order = torch.sort(scores[ranked].double(), descending=True)
    hit = correct[ranked][order].long()
    _, counts = torch.unique_consecutive(values, return_counts=True)
    group = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    hits = torch.zeros(len(counts), dtype=torch.long, device=counts.device).index_add_(0, group, hit)
    above = torch.cumsum(hits, 0) - hits
    twice_area = int(((counts - hits) * (2 * above + hits)).sum())
    return twice_area / (2 * n_known * n_unknown)  # one correctly rounded division of two integers


def average_precision(scores: Tensor, positive: Tensor) -> float:
    """Average precision of ranking the ``positive`` samples first by ``scores``, as scikit-learn's
    ``average_precision_score`` defines it: ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct scores from the
    highest down, ``P_k`` and ``R_k`` the precision and recall when every sample scoring at least the k-th one is
    accepted (tied samples are accepted together; no interpolation). NaN when either class is absent.

    Args:
        scores: each sample's score (higher = more likely positive).
        positive: whether it is a positive sample.
    """
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == positive.numel():
        return float("nan")
    values, order = torch.sort(scores.double(), descending=True)
    _, counts = torch.unique_consecutive(values, return_counts=True)
    accepted = torch.cumsum(counts, 0)
    true_pos = torch.cumsum(positive[order].long(), 0)[accepted - 1]
    new_pos = torch.diff(true_pos, prepend=true_pos.new_zeros(1))  # R_k - R_{k-1}, times n_pos
    return float((new_pos.double() * true_pos.double() / accepted.double()).sum() / n_pos)


class OpenSetMetrics(Metric):
    """Closed-set accuracy of the known classes and detection of unknown ones, on one evaluation split.

    ``update(logits, labels)`` takes class scores of shape (N, K) over the ``num_known`` known classes (the
    metric takes the softmax itself) and integer labels, where a label ``>= num_known`` marks an unknown-class
    sample. ``compute()`` returns floats:

    - ``pacc``: mean over the known classes present of per-class accuracy;
    - ``gacc``: accuracy over all known-class samples;
    - ``auroc``: known = positive, ranked by the OOD ``score`` (default: maximum softmax probability);
    - ``fpr95``: fraction of unknowns accepted at the threshold that keeps 95% of the knowns;
    - ``hm``: harmonic mean of ``pacc`` and ``auroc``;
    - ``threshold``: the score below which a sample is called unknown, chosen by ``rule`` from the split's scores
      without labels;
    - ``known_acc``: mean over the known classes present of the share of their samples accepted as known and
      classified right (OS* of open-set domain adaptation);
    - ``unknown_acc``: share of unknown samples called unknown (UNK);
    - ``hscore``: harmonic mean of ``known_acc`` and ``unknown_acc`` (the H-score);
    - ``ece``: expected calibration error of the known-class samples (:func:`expected_calibration_error`, equal-width
      bins), their confidence the top probability of ``softmax(logit_scale * logits)``;
    - ``nll``: mean negative log-likelihood of the true class over the known-class samples, same probabilities;
    - ``oscr``: open-set classification rate, ranked by the OOD ``score`` (:func:`open_set_classification_rate`);
    - ``aupr_in``: average precision with the knowns positive, ranked by the OOD score (:func:`average_precision`);
    - ``aupr_out``: average precision with the unknowns positive, ranked by minus the OOD score;
    - ``samples``: how many samples were evaluated (over all processes).

    After ``compute``, ``last`` holds the per-sample OOD scores, predictions, labels, confidences and true-class
    log-probabilities (NaN for unknowns; over all processes), the threshold and the number of calibration bins, on
    the CPU, for pictures.

    Detection metrics (``auroc``, ``fpr95``, ``hm``, ``unknown_acc``, ``hscore``, ``oscr``, ``aupr_in``,
    ``aupr_out``) are NaN when the split holds no unknown (or no known) sample, as in the closed setting; ``ece`` and
    ``nll`` need known samples only. Every metric but ``samples`` is NaN when there is no sample at all.

    States are float tensors (class ids are exact in float32 up to 2**24): a process that got no batch syncs
    torchmetrics' empty float placeholder, which must match the other processes' dtype.

    Args:
        num_known: number K of known classes.
        score: the out-of-distribution score (higher = known); default :class:`~uft.scores.MSP` at temperature 1.
        rule: how the known/unknown threshold is chosen from the scores; default
            :class:`~uft.scores.HistogramSplit`.
        logit_scale: the model's training scale, for ``ece`` and ``nll`` only: the plain cosines given to
            ``update`` are near one another (a softmax at temperature 1 is almost uniform), the probabilities the
            model gives are ``softmax(logit_scale * cosine)``; default 100, CLIP's.
        calibration_bins: the number of equal-width confidence bins of ``ece``.
    """

    full_state_update = False

    def __init__(
        self,
        num_known: int,
        score: OODScore | None = None,
        rule: ThresholdRule | None = None,
        logit_scale: float = 100.0,
        calibration_bins: int = CALIBRATION_BINS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        if calibration_bins < 1:
            raise ValueError(f"calibration_bins must be at least 1, got {calibration_bins}")
        self.num_known = num_known
        self.score = score if score is not None else MSP()
        self.rule = rule if rule is not None else HistogramSplit()
        self.logit_scale, self.calibration_bins = float(logit_scale), calibration_bins
        self.last: dict | None = None
        self.add_state("ood", default=[], dist_reduce_fx="cat")
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        # Per sample at the training scale: the top probability, and the log-probability of the label (NaN for an
        # unknown, which has none). Kept per sample, not as bin sums, so the functional core computes every metric.
        self.add_state("confidence", default=[], dist_reduce_fx="cat")
        self.add_state("true_logprob", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        if logits.shape[-1] != self.num_known:
            raise ValueError(f"expected scores over {self.num_known} known classes, got shape {tuple(logits.shape)}")
        if not torch.isfinite(logits).all():  # NaN would sort as the largest score: a "perfect" detector
            raise ValueError("OpenSetMetrics: scores must be finite (NaN or inf cannot be ranked)")
        self.ood.append(self.score(logits))
        self.preds.append(logits.argmax(dim=-1).float())
        self.labels.append(labels.float())
        # In float64 (a log-probability near 0 keeps its digits), stored as float32 like every state.
        log_probs = torch.log_softmax(self.logit_scale * logits.double(), dim=-1)
        known = labels < self.num_known
        true = log_probs.gather(-1, torch.where(known, labels, 0).long()[:, None]).squeeze(-1)
        self.confidence.append(log_probs.max(dim=-1).values.exp().float())
        self.true_logprob.append(true.masked_fill(~known, float("nan")).float())

    def compute(self) -> dict[str, float]:
        self.last = None
        if len(self.labels) == 0:  # no sample on any process: an empty list, or an empty tensor after the sync
            return {**dict.fromkeys(METRIC_NAMES + DECISION_NAMES + EXTRA_NAMES, float("nan")), "samples": 0}
        ood, preds, labels = dim_zero_cat(self.ood), dim_zero_cat(self.preds).long(), dim_zero_cat(self.labels).long()
        confidence, true_logprob = dim_zero_cat(self.confidence), dim_zero_cat(self.true_logprob)
        values = open_set_values(
            ood, preds, labels, self.num_known, self.rule, confidence, true_logprob, self.calibration_bins
        )
        # The per-sample values behind the numbers (over all processes), for pictures of this evaluation.
        self.last = {
            "ood": ood.cpu(),
            "preds": preds.cpu(),
            "labels": labels.cpu(),
            "threshold": values["threshold"],
            "confidence": confidence.cpu(),
            "true_logprob": true_logprob.cpu(),
            "bins": self.calibration_bins,
        }
        return values


def open_set_values(
    ood: Tensor,
    preds: Tensor,
    labels: Tensor,
    num_known: int,
    rule: ThresholdRule,
    confidence: Tensor | None = None,
    true_logprob: Tensor | None = None,
    bins: int = CALIBRATION_BINS,
) -> dict:
    """The metrics of :class:`OpenSetMetrics` from every sample's OOD score, top class and label (at least one
    sample): the functional core, also for predictions recorded earlier (an online stream's).

    Args:
        ood: each sample's OOD score.
        preds: its top class.
        labels: its label (``>= num_known``: unknown).
        num_known: the number K of known classes.
        rule: the label-free rule of the unknown decision's threshold.
        confidence: its top probability at the training scale, for ``ece``; without it ``ece`` is NaN (a stream's
            record keeps no probabilities at that scale).
        true_logprob: the log-probability of its label at that scale (any value for an unknown), for ``nll``;
            without it ``nll`` is NaN.
        bins: the number of confidence bins of ``ece``.
    """
    known = labels < num_known
    correct = (preds == labels) & known
    per_class_hits = torch.bincount(labels[known], weights=correct[known].double(), minlength=num_known)
    per_class_count = torch.bincount(labels[known], minlength=num_known).double()
    present = per_class_count > 0
    pacc = float((per_class_hits[present] / per_class_count[present]).mean()) if present.any() else float("nan")
    gacc = float(correct.sum().double() / known.sum()) if known.any() else float("nan")
    auroc = binary_auroc(ood, known)
    fpr95 = fpr_at_tpr(ood, known, 0.95)
    hm = 2 * pacc * auroc / (pacc + auroc) if pacc + auroc > 0 else float("nan")
    threshold = rule.threshold(ood)
    accepted = ood.double() >= threshold
    hits = torch.bincount(labels[known], weights=(correct & accepted)[known].double(), minlength=num_known)
    known_acc = float((hits[present] / per_class_count[present]).mean()) if present.any() else float("nan")
    unknown_acc = float((~accepted[~known]).double().mean()) if (~known).any() else float("nan")
    ece = nll = float("nan")
    if confidence is not None:
        ece = expected_calibration_error(confidence[known], correct[known], bins)
    if true_logprob is not None and known.any():
        # Summed in sorted order: the same number whatever order the processes' samples were gathered in.
        nll = float(-torch.sort(true_logprob[known].double()).values.sum() / int(known.sum()))
    return {
        "pacc": pacc,
        "gacc": gacc,
        "auroc": auroc,
        "fpr95": fpr95,
        "hm": hm,
        "known_acc": known_acc,
        "unknown_acc": unknown_acc,
        "hscore": _harmonic(known_acc, unknown_acc),
        "threshold": threshold,
        "ece": ece,
        "nll": nll,
        "oscr": open_set_classification_rate(ood, correct, known),
        "aupr_in": average_precision(ood, known),
        "aupr_out": average_precision(-ood.double(), ~known),
        "samples": labels.numel(),
    }


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else float("nan")
