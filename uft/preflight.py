"""The preflight: a look at the model's predictions on a pass the run makes anyway, before any result rests on them.

A class-name file in another order than the one the list labels follow gives every label another class's name: the
run trains and reports numbers at chance level without any error (tim-learn/UEO#1: 1.47% accuracy, silently). A
zero-shot CLIP fit for the data is far above chance, so the predictions of one pass are checked:

- with labels, a top-1 accuracy over the known-class images (labels below K; unknown-class images left out) below
  :data:`CHANCE_FACTOR` times the chance rate 1/K is a finding that names the likely causes (:func:`near_chance`);
- without labels, one class taking more than :data:`PILE_SHARE` of the predictions is one (:func:`piled`).

``fit`` checks the zero-shot model before the first step (:func:`check_zero_shot`): on the confidence pass over the
whole target set where the objective builds a table from it, else on a pass over an evenly spread subset of at most
:data:`SPREAD_IMAGES` target images (:func:`spread`). ``validate``/``test`` check the model they evaluate, zero-shot
or trained, on its evaluation (:func:`check_evaluation`). A finding is a warning, or with ``strict``
(``--data.strict_preflight true``) an :class:`~uft.errors.InputError`. Every input is the same on every process (a
table summed over them, gathered predictions), so every process takes the same decision. Plain PyTorch: the module
passes the predictions and its rank-0 warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from uft.data.contract import TargetData
from uft.errors import InputError
from uft.evaluation import SplitEvaluation

CHANCE_FACTOR = 2  # an accuracy below this many times the chance rate 1/K is near chance
PILE_SHARE = 0.5  # one class predicted for more than this share of the images is a pile
# With fewer known classes twice chance is half or more (K = 2: every accuracy short of 100%) and a class predicted
# for over half of the images is ordinary: neither check says anything.
MIN_CLASSES = 4
MIN_IMAGES = 20  # fewer (known-class, for the accuracy) images than this say too little: no check
SPREAD_IMAGES = 512  # a fit that makes no pass over the whole target set looks at most at this many of its images

_LABEL_CAUSES = (
    "check that the list labels follow the order of the class names (label i is the i-th name of data.class_names), "
    "that the class-name file is this data set's, and that the images are of the intended domain (data.root, "
    "data.domain)"
)
_PILE_CAUSES = (
    "check that the class-name file is this data set's, that the images are of the intended domain (data.root, "
    "data.domain) and that the model's weights are the intended ones (model.pretrained)"
)


def spread(num_samples: int, limit: int = SPREAD_IMAGES) -> tuple[int, int]:
    """``(every, count)``: every ``every``-th of ``num_samples`` target samples, ``count`` of them (at most
    ``limit``). Spread over the whole list, not its start: lists are often sorted by class, and the first images of
    one would all be of one class."""
    every = max(1, -(-num_samples // limit))
    return every, -(-num_samples // every)


def near_chance(preds: Tensor, labels: Tensor, num_known: int, what: str) -> str | None:
    """The finding when the top-1 accuracy of ``preds`` over the known-class images (``labels`` below
    ``num_known``) is below :data:`CHANCE_FACTOR` / K; ``None`` when it is not, or when there are fewer than
    :data:`MIN_IMAGES` known-class images or :data:`MIN_CLASSES` classes. ``what`` names the accuracy."""
    known = labels < num_known
    count = int(known.sum())
    if num_known < MIN_CLASSES or count < MIN_IMAGES:
        return None
    correct = int((preds[known] == labels[known]).sum())
    if correct * num_known >= CHANCE_FACTOR * count:  # accuracy >= CHANCE_FACTOR / K, in integers: exact
        return None
    return (
        f"{what} is {_percent(correct / count)} ({correct} of {count} known-class images), near chance for "
        f"{num_known} known classes (1/{num_known} = {_percent(1 / num_known)}; below {CHANCE_FACTOR} times that, "
        f"{_percent(CHANCE_FACTOR / num_known)}, the labels or class names are likely wrong): {_LABEL_CAUSES}"
    )


def piled(preds: Tensor, class_names: list[str], what: str) -> str | None:
    """The finding when one class takes more than :data:`PILE_SHARE` of ``preds`` (class ids into
    ``class_names``, the K known ones); ``None`` when none does, or with fewer than :data:`MIN_IMAGES` images or
    :data:`MIN_CLASSES` classes. ``what`` names the predictions."""
    count, num_known = len(preds), len(class_names)
    if num_known < MIN_CLASSES or count < MIN_IMAGES:
        return None
    counts = torch.bincount(preds.long().cpu(), minlength=num_known)
    top = int(counts.argmax())
    if int(counts[top]) <= PILE_SHARE * count:
        return None
    return (
        f"{what} pile onto one class: {class_names[top]!r} takes {_percent(int(counts[top]) / count)} of the "
        f"{count} images (more than {_percent(PILE_SHARE)}, with {num_known} known classes): {_PILE_CAUSES}"
    )


def check_zero_shot(
    cosine: Tensor, data: TargetData, class_names: list[str], warn: Callable[[str], object], every: int = 1
) -> Tensor:
    """Before training: the zero-shot model's cosine similarities (N, K) on every ``every``-th target sample of
    ``data`` (NaN rows, of unreadable images, left out): :func:`near_chance` where the target set has labels (read
    for this check only), else :func:`piled`; a finding is :func:`settle` d as ``data.strict_preflight`` says.
    Returns ``cosine``."""
    readable = ~cosine.isnan().any(dim=1)
    preds = cosine[readable].argmax(dim=1).cpu()
    if data.target_labeled:
        labels = data.target_labels()[::every].cpu()[readable.cpu()]
        finding = near_chance(preds, labels, len(class_names), "zero-shot accuracy on the target set")
    else:
        finding = piled(preds, class_names, "zero-shot predictions on the target set")
    settle([finding], data.strict_preflight, warn)
    return cosine


def check_evaluation(
    evaluation: SplitEvaluation, splits: Iterable[str], data: object, warn: Callable[[str], object]
) -> None:
    """After the evaluation of ``validate``/``test``: the evaluated model's predictions (zero-shot or trained) on each
    of the labeled ``splits`` it just computed (:attr:`~uft.evaluation.SplitEvaluation.results`; a stream's
    segments are not looked at apart), by :func:`near_chance`; findings are :func:`settle` d, strictly where
    ``data`` is a :class:`~uft.data.contract.TargetData` whose ``strict_preflight`` is set."""
    results = evaluation.results
    findings = (
        near_chance(
            results[split]["preds"],
            results[split]["labels"],
            evaluation.num_known,
            f"the evaluated model's accuracy on the {split} split",
        )
        for split in splits
        if split in results
    )
    settle(findings, isinstance(data, TargetData) and data.strict_preflight, warn)


def settle(findings: Iterable[str | None], strict: bool, warn: Callable[[str], object]) -> None:
    """Each finding as a warning (``warn``: the caller's rank-0 warning), or with ``strict`` the first one as an
    :class:`~uft.errors.InputError` (one line)."""
    for finding in findings:
        if finding is None:
            continue
        if strict:
            raise InputError(f"preflight: {finding} (data.strict_preflight is set: this is an error)")
        warn(f"uft: preflight: {finding}; this is a warning (--data.strict_preflight true makes it an error)")


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"
