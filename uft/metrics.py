"""Open-set evaluation metrics as torchmetrics ``Metric``s (correct under several processes by construction).

Under the reference convention the scores passed to ``update`` are the plain cosine similarities between image
and known-class text features (temperature 1), and the out-of-distribution score is the maximum softmax
probability (MSP) over them; another score (:mod:`uft.scores`) can be chosen.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from uft.scores import MSP, HistogramSplit, OODScore, ThresholdRule

METRIC_NAMES = ("pacc", "gacc", "auroc", "fpr95", "hm")
DECISION_NAMES = ("known_acc", "unknown_acc", "hscore", "threshold")  # of the known/unknown decision


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
    - ``samples``: how many samples were evaluated (over all processes).

    After ``compute``, ``last`` holds the per-sample OOD scores, predictions and labels (over all processes) and the
    threshold, on the CPU, for pictures.

    Detection metrics are NaN when the split holds no unknown (or no known) sample, as in the closed setting;
    every metric but ``samples`` is NaN when there is no sample at all.

    States are float tensors (class ids are exact in float32 up to 2**24): a process that got no batch syncs
    torchmetrics' empty float placeholder, which must match the other processes' dtype.

    Args:
        num_known: number K of known classes.
        score: the out-of-distribution score (higher = known); default :class:`~uft.scores.MSP` at temperature 1.
        rule: how the known/unknown threshold is chosen from the scores; default
            :class:`~uft.scores.HistogramSplit`.
    """

    full_state_update = False

    def __init__(
        self, num_known: int, score: OODScore | None = None, rule: ThresholdRule | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.num_known = num_known
        self.score = score if score is not None else MSP()
        self.rule = rule if rule is not None else HistogramSplit()
        self.last: dict | None = None
        self.add_state("ood", default=[], dist_reduce_fx="cat")
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        if logits.shape[-1] != self.num_known:
            raise ValueError(f"expected scores over {self.num_known} known classes, got shape {tuple(logits.shape)}")
        if not torch.isfinite(logits).all():  # NaN would sort as the largest score: a "perfect" detector
            raise ValueError("OpenSetMetrics: scores must be finite (NaN or inf cannot be ranked)")
        self.ood.append(self.score(logits))
        self.preds.append(logits.argmax(dim=-1).float())
        self.labels.append(labels.float())

    def compute(self) -> dict[str, float]:
        self.last = None
        if len(self.labels) == 0:  # no sample on any process: an empty list, or an empty tensor after the sync
            return {**dict.fromkeys(METRIC_NAMES + DECISION_NAMES, float("nan")), "samples": 0}
        ood, preds, labels = dim_zero_cat(self.ood), dim_zero_cat(self.preds).long(), dim_zero_cat(self.labels).long()
        values = open_set_values(ood, preds, labels, self.num_known, self.rule)
        # The per-sample values behind the numbers (over all processes), for pictures of this evaluation.
        self.last = {"ood": ood.cpu(), "preds": preds.cpu(), "labels": labels.cpu(), "threshold": values["threshold"]}
        return values


def open_set_values(ood: Tensor, preds: Tensor, labels: Tensor, num_known: int, rule: ThresholdRule) -> dict:
    """The metrics of :class:`OpenSetMetrics` from every sample's OOD score, top class and label (at least one
    sample): the functional core, also for predictions recorded earlier (an online stream's)."""
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
        "samples": labels.numel(),
    }


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else float("nan")
