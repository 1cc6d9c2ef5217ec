"""Independent reference implementations of the objective and metric formulas, shared by the tests.

Written from the formulas (each docstring gives its formula), with plain python loops and ``math`` in float64, or
with scikit-learn for the metrics: nothing here calls ``uft``. Entropy convention, as in the UEO reference
implementation: ``H(p) = -sum_k p_k log(p_k + 1e-5)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

EPS = 1e-5  # inside the logarithm of the entropy
FD_EPS = 1e-6  # step of the central finite differences


# ---------------------------------------------------------------------------------------------------- building blocks


def softmax(values) -> list[float]:
    """Numerically stable softmax of a sequence: ``p_k = exp(v_k - max v) / sum_j exp(v_j - max v)``.

    Args:
        values: the numbers (a list or a 1-d array).

    Returns:
        The probabilities, as python floats.
    """
    values = [float(v) for v in values]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def entropy(p) -> float:
    """Shannon entropy ``H(p) = -sum_k p_k log(p_k + 1e-5)``.

    Args:
        p: a probability vector.
    """
    return -sum(pk * math.log(pk + EPS) for pk in p)


def row_probs(logits: np.ndarray) -> list[list[float]]:
    """``p_i = softmax(logits_i)`` for every row ``i``.

    Args:
        logits: an (N, K) array.
    """
    return [softmax(logits[i]) for i in range(logits.shape[0])]


def mean_probs(probs: list[list[float]]) -> list[float]:
    """The marginal prediction ``mean_i p_i`` of a list-of-lists matrix.

    Args:
        probs: N rows of K probabilities.
    """
    n, k = len(probs), len(probs[0])
    return [sum(probs[i][c] for i in range(n)) / n for c in range(k)]


def fd_grad(fn: Callable[[np.ndarray], float], x: np.ndarray, eps: float = FD_EPS) -> np.ndarray:
    """Central finite-difference gradient ``(f(x + eps e_j) - f(x - eps e_j)) / (2 eps)`` of a scalar function.

    Args:
        fn: the function of an array.
        x: where the gradient is taken.
        eps: the step.
    """
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        grad[idx] = (fn(plus) - fn(minus)) / (2 * eps)
    return grad


# ---------------------------------------------------------------------------------------------------- entropy family


def ent_ref(logits: np.ndarray) -> float:
    """ENT (Tent): ``L = mean_i H(p_i)``.

    Args:
        logits: an (N, K) array.
    """
    probs = row_probs(logits)
    return sum(entropy(p) for p in probs) / len(probs)


def im_ref(logits: np.ndarray, trade: float) -> float:
    """IM (SHOT-IM): ``L = mean_i H(p_i) - trade * H(mean_i p_i)``.

    Args:
        logits: an (N, K) array.
        trade: weight of the marginal-entropy term.
    """
    probs = row_probs(logits)
    return sum(entropy(p) for p in probs) / len(probs) - trade * entropy(mean_probs(probs))


def ueo_ref(logits: np.ndarray, weights, trade: float) -> float:
    """UEO (Liang et al., ICML 2024): ``L = sum_i w_i H(p_i) / sum_i w_i - trade * H(sum_i p_i / w_i / sum_i 1 / w_i)``.

    Args:
        logits: an (N, K) array.
        weights: the N confidence weights ``w_i``.
        trade: weight of the marginal-entropy term.
    """
    n, k = logits.shape
    probs = row_probs(logits)
    weights = [float(w) for w in weights]
    conditional = sum(weights[i] * entropy(probs[i]) for i in range(n)) / sum(weights)
    inv_total = sum(1.0 / w for w in weights)
    marginal = [sum(probs[i][c] / weights[i] for i in range(n)) / inv_total for c in range(k)]
    return conditional - trade * entropy(marginal)


def confidence_ref(cosine: np.ndarray, tau: float) -> np.ndarray:
    """UEO's confidence weights ``w_i = max_k softmax_k(cos_ik / tau)``, row by row.

    Args:
        cosine: an (N, K) array of cosine similarities.
        tau: the softmax temperature.
    """
    return np.array([max(softmax(row / tau)) for row in cosine])


# ---------------------------------------------------------------------------------------------------- pseudo-labels


def upl_prepare_ref(cosine: np.ndarray, top_k: int, temperature: float) -> list[int]:
    """Brute-force UPL table: ``p_i = softmax(cos_i / temperature)``; per predicted class ``c = argmax_k p_ik``, its
    ``top_k`` members by ``p_ic`` (ties by sample index) get the label ``c``, every other sample ``-1``.

    Args:
        cosine: an (N, K) array of cosine similarities.
        top_k: pseudo-labelled samples per class at most.
        temperature: the softmax temperature.
    """
    n, k = cosine.shape
    probs = [softmax(cosine[i] / temperature) for i in range(n)]
    predicted = [max(range(k), key=lambda c, p=p: p[c]) for p in probs]
    table = [-1] * n
    for c in range(k):
        members = [i for i in range(n) if predicted[i] == c]
        members.sort(key=lambda i, c=c: (-probs[i][c], i))
        for i in members[:top_k]:
            table[i] = c
    return table


def upl_forward_ref(logits: np.ndarray, table) -> float:
    """UPL's loss: ``mean over rows with a label y_i != -1 of -log softmax(logits_i)[y_i]``; 0 when there is none.

    Args:
        logits: an (N, K) array.
        table: the N pseudo-labels (``-1``: none).
    """
    terms = []
    for i, label in enumerate(table):
        if label == -1:
            continue
        row = [float(v) for v in logits[i]]
        top = max(row)
        log_norm = top + math.log(sum(math.exp(v - top) for v in row))
        terms.append(log_norm - row[int(label)])
    return sum(terms) / len(terms) if terms else 0.0


# ---------------------------------------------------------------------------------------------------- transport


def pouf_ref(
    logits: np.ndarray, cosine: np.ndarray, entropy_weight: float = 0.3, diversity_weight: float = 0.0
) -> float:
    """POUF: with costs ``C_ic = 1 - cos_ic``, row softmax ``p_i`` (image to classes) and column softmax ``q_c`` (class
    to images) of the logits, ``L = sum_i sum_c C_ic p_ic / N + sum_c sum_i C_ic q_ci / K
    + entropy_weight * mean_i H(p_i) - diversity_weight * H(mean_i p_i)``.

    Args:
        logits: an (N, K) array.
        cosine: the (N, K) cosine similarities.
        entropy_weight: weight of the conditional entropy.
        diversity_weight: weight of the marginal entropy.
    """
    n, k = logits.shape
    probs = row_probs(logits)
    columns = [softmax([logits[i, c] for i in range(n)]) for c in range(k)]  # columns[c][i]
    cost = [[1.0 - float(cosine[i, c]) for c in range(k)] for i in range(n)]
    to_classes = sum(sum(cost[i][c] * probs[i][c] for c in range(k)) for i in range(n)) / n
    to_images = sum(sum(cost[i][c] * columns[c][i] for i in range(n)) for c in range(k)) / k
    conditional = sum(entropy(p) for p in probs) / n
    return to_classes + to_images + entropy_weight * conditional - diversity_weight * entropy(mean_probs(probs))


# ---------------------------------------------------------------------------------------------------- metrics


def open_set_metrics_ref(logits: torch.Tensor, labels: torch.Tensor, num_known: int) -> dict[str, float]:
    """The five open-set metrics with scikit-learn, on the float32 softmax probabilities of ``logits`` (the UEO paper's
    score is their maximum, MSP at temperature 1):

    - ``pacc``: mean over the known classes present of per-class accuracy; ``gacc``: accuracy over known samples;
    - ``auroc``: known = positive, ranked by MSP; ``fpr95``: false-positive rate at the first ROC point whose
      true-positive rate reaches 95%; both NaN without unknown (or known) samples;
    - ``hm = 2 pacc auroc / (pacc + auroc)``.

    Args:
        logits: (N, K) class scores over the known classes.
        labels: N integer labels; ``>= num_known`` marks an unknown sample.
        num_known: the number K of known classes.
    """
    probs = torch.softmax(logits.float(), dim=-1).numpy()
    labels = labels.numpy()
    msp, preds = probs.max(axis=1), probs.argmax(axis=1)
    known = labels < num_known
    nan = float("nan")
    pacc = gacc = auroc = fpr95 = nan
    if known.any():
        cm = confusion_matrix(labels[known], preds[known], labels=list(range(num_known)))
        support = cm.sum(axis=1)
        pacc = float(np.mean(np.diag(cm)[support > 0] / support[support > 0]))
        gacc = float(np.mean(preds[known] == labels[known]))
    if known.any() and not known.all():
        auroc = float(roc_auc_score(known, msp))
        fpr, tpr, _ = roc_curve(known, msp, drop_intermediate=False)
        fpr95 = float(fpr[np.argmax(tpr >= 0.95)])
    hm = 2 * pacc * auroc / (pacc + auroc)
    return {"pacc": pacc, "gacc": gacc, "auroc": auroc, "fpr95": fpr95, "hm": hm}


def calibration_ref(
    cosine: torch.Tensor, labels: torch.Tensor, num_known: int, logit_scale: float, bins: int = 15
) -> dict[str, float]:
    """Calibration and likelihood of the known-class samples under ``p_i = softmax(logit_scale * cosine_i)``, in
    float64 python:

    - ``ece`` (Guo et al., ICML 2017): the confidence ``c_i = max_k p_ik`` falls in bin ``b`` when
      ``b / bins < c_i <= (b + 1) / bins``; ``ECE = sum_b |B_b| / n |acc(B_b) - conf(B_b)|``, accuracy = top class
      (the first largest cosine) equals the label;
    - ``nll = -mean_i log p_i[y_i]``.

    Both NaN without a known sample.

    Args:
        cosine: (N, K) cosine similarities.
        labels: N integer labels; ``>= num_known`` marks an unknown sample.
        num_known: the number K of known classes.
        logit_scale: the multiplier of the cosines.
        bins: the number of equal-width confidence bins.
    """
    rows = [[float(v) for v in row] for row, y in zip(cosine.double(), labels.tolist()) if y < num_known]
    known_labels = [y for y in labels.tolist() if y < num_known]
    if not rows:
        return {"ece": float("nan"), "nll": float("nan")}
    hits, mass = [0.0] * bins, [0.0] * bins
    nll = 0.0
    for row, y in zip(rows, known_labels):
        probs = softmax([logit_scale * v for v in row])
        confidence = max(probs)
        top = max(range(len(row)), key=lambda k, row=row: (row[k], -k))  # the first largest
        b = next(b for b in range(bins) if b / bins < confidence <= (b + 1) / bins)
        hits[b] += float(top == y)
        mass[b] += confidence
        scaled = [logit_scale * v for v in row]
        largest = max(scaled)
        nll += largest + math.log(sum(math.exp(v - largest) for v in scaled)) - scaled[y]
    n = len(rows)
    return {"ece": sum(abs(h - m) for h, m in zip(hits, mass)) / n, "nll": nll / n}


def oscr_ref(scores, correct, known) -> float:
    """Open-set classification rate in its pairwise form: ``sum over (correct known i, unknown j) of
    ([s_i > s_j] + [s_i == s_j] / 2) / (N_known N_unknown)``, summed in integers (twice each term) and divided once;
    NaN without knowns or without unknowns.

    Args:
        scores: each sample's OOD score.
        correct: whether it is a known sample classified right.
        known: whether it is a known sample.
    """
    scores, correct, known = [float(s) for s in scores], [bool(c) for c in correct], [bool(k) for k in known]
    n_known, n_unknown = sum(known), len(known) - sum(known)
    if n_known == 0 or n_unknown == 0:
        return float("nan")
    twice = 0
    for i, s_i in enumerate(scores):
        if not correct[i]:
            continue
        for j, s_j in enumerate(scores):
            if not known[j]:
                twice += 2 * (s_i > s_j) + (s_i == s_j)
    return twice / (2 * n_known * n_unknown)


def detection_extras_ref(scores: torch.Tensor, correct: torch.Tensor, known: torch.Tensor) -> dict[str, float]:
    """``oscr`` (:func:`oscr_ref`), and scikit-learn's average precision of the knowns ranked by the score
    (``aupr_in``) and of the unknowns ranked by minus the score (``aupr_out``), NaN when a class is absent.

    Args:
        scores: each sample's OOD score.
        correct: whether it is a known sample classified right.
        known: whether it is a known sample.
    """
    values = scores.double().numpy()
    known = known.numpy().astype(bool)
    aupr_in = aupr_out = float("nan")
    if known.any() and not known.all():
        aupr_in = float(average_precision_score(known, values))
        aupr_out = float(average_precision_score(~known, -values))
    return {"oscr": oscr_ref(values, correct.numpy(), known), "aupr_in": aupr_in, "aupr_out": aupr_out}


def extra_metrics_ref(
    logits: torch.Tensor, labels: torch.Tensor, num_known: int, logit_scale: float = 100.0
) -> dict[str, float]:
    """``ece`` and ``nll`` (:func:`calibration_ref` at ``logit_scale``), ``oscr``, ``aupr_in`` and ``aupr_out``
    (:func:`detection_extras_ref`) by the float32 MSP at temperature 1 of ``logits``, as :func:`open_set_metrics_ref`
    ranks.

    Args:
        logits: (N, K) cosine similarities over the known classes.
        labels: N integer labels; ``>= num_known`` marks an unknown sample.
        num_known: the number K of known classes.
        logit_scale: the training scale of the probabilities behind ``ece`` and ``nll``.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    known = labels < num_known
    correct = known & (logits.argmax(dim=-1) == labels)  # the top class: the first largest cosine
    extras = detection_extras_ref(probs.max(dim=-1).values, correct, known)
    return {**calibration_ref(logits, labels, num_known, logit_scale), **extras}
