"""Per-class report of an evaluation: for each known class how well it is recognised and where its images go, and
where the unknown images go; written as ``per_class.csv`` (:func:`write_per_class_csv`).

``per_class.csv`` has one row per known class of each evaluated split, in class order, then one row for that split's
unknown images (the columns of :data:`PER_CLASS_COLUMNS`):

- ``split``: the evaluation split (``test``, ``target``);
- ``class_id``, ``class``: the known class's index and name; ``-1`` and ``unknown`` for the row of every image whose
  label is no known class;
- ``count``: the split's images of the class;
- ``correct``: those whose top known class is their own (whatever the unknown decision);
- ``recall``: ``correct / count``, the per-class accuracy whose mean over the classes present is ``pacc``; empty for
  a class without images and for the unknown row;
- ``called_unknown``: those whose OOD score is below the split's threshold (called unknown); on the unknown row, the
  unknown images rejected, so ``called_unknown / count`` is ``unknown_acc``;
- ``top_confusion``, ``top_confusion_count``: of the images accepted as known (score at or above the threshold) whose
  top class is not their own, the known class most of them went to, and how many did; on the unknown row, of the
  accepted unknown images (every one of them is a mistake), the known class that absorbed most. A tie goes to the
  lowest class id; both empty when no image was accepted with a wrong class.

So a known class's images split into ``correct``, ``called_unknown`` and the accepted wrong ones (of which
``top_confusion`` took the largest share), the first two overlapping in the images classified right but rejected.
Plain torch: the rows come from :class:`~uft.metrics.OpenSetMetrics`' per-sample results (``last``) or from a run's
``scores.pt``.
"""

from __future__ import annotations

import csv
import io
import os

import torch
from torch import Tensor

from uft.atomic_files import write_atomic

PER_CLASS_COLUMNS = (
    "split",
    "class_id",
    "class",
    "count",
    "correct",
    "recall",
    "called_unknown",
    "top_confusion",
    "top_confusion_count",
)
UNKNOWN_ID, UNKNOWN_NAME = -1, "unknown"  # the row of the unknown images, as predictions.csv names a rejection


def per_class_rows(
    split: str, ood: Tensor, preds: Tensor, labels: Tensor, threshold: float, class_names: list[str]
) -> list[dict]:
    """The rows of ``per_class.csv`` (module docstring) for one split: one per known class, in class order (a class
    without images too, its ``recall`` None), then the unknown images' row. Values are Python ints, floats, strings
    or None (an empty cell).

    Args:
        split: the split's name, the ``split`` column.
        ood: each image's OOD score (higher = more likely known).
        preds: its top known class.
        labels: its label (``>= len(class_names)``: unknown).
        threshold: the unknown decision's threshold: an image scoring below it is called unknown, as in
            :func:`~uft.metrics.open_set_values` (a NaN threshold accepts nothing).
        class_names: the K known classes' names, by class id.
    """
    num_known = len(class_names)
    preds, labels = preds.long(), labels.long()
    known = labels < num_known
    accepted = ood.double() >= threshold  # the comparison open_set_values makes
    count = torch.bincount(labels[known], minlength=num_known)
    correct = torch.bincount(labels[known & (preds == labels)], minlength=num_known)
    called_unknown = torch.bincount(labels[known & ~accepted], minlength=num_known)
    # confusion[c, k]: images of class c accepted with the wrong top class k (the diagonal stays 0).
    wrong = known & accepted & (preds != labels)
    confusion = torch.bincount(labels[wrong] * num_known + preds[wrong], minlength=num_known * num_known)
    top, top_count = _most(confusion.view(num_known, num_known))
    rows = []
    for c, name in enumerate(class_names):
        n = int(count[c])
        rows.append(
            {
                "split": split,
                "class_id": c,
                "class": name,
                "count": n,
                "correct": int(correct[c]),
                "recall": int(correct[c]) / n if n else None,
                "called_unknown": int(called_unknown[c]),
                **_confusion(int(top[c]), int(top_count[c]), class_names),
            }
        )
    absorbed = torch.bincount(preds[~known & accepted], minlength=num_known)
    top, top_count = _most(absorbed[None])
    rows.append(
        {
            "split": split,
            "class_id": UNKNOWN_ID,
            "class": UNKNOWN_NAME,
            "count": int((~known).sum()),
            "correct": None,
            "recall": None,
            "called_unknown": int((~known & ~accepted).sum()),
            **_confusion(int(top[0]), int(top_count[0]), class_names),
        }
    )
    return rows


def _most(counts: Tensor) -> tuple[Tensor, Tensor]:
    """Per row of ``counts`` (R, K): the column with the largest count, the lowest such column on a tie, and the
    count. Ranked by ``count * K + (K - 1 - column)``, which has one maximum per row, so the tie rule does not rest on
    which maximum ``argmax`` happens to return."""
    num = counts.shape[1]
    key = counts * num + torch.arange(num - 1, -1, -1, device=counts.device)
    top = key.argmax(dim=1)
    return top, counts.gather(1, top[:, None]).squeeze(1)


def _confusion(top: int, count: int, class_names: list[str]) -> dict:
    if count == 0:  # nothing accepted with a wrong class: no class took any
        return {"top_confusion": None, "top_confusion_count": None}
    return {"top_confusion": class_names[top], "top_confusion_count": count}


def per_class_recall(preds: Tensor, labels: Tensor, num_known: int) -> Tensor:
    """Each known class's recall (its images whose top class is their own; the ``recall`` column), float64,
    NaN for a class without images."""
    known = labels < num_known
    hits = torch.bincount(labels[known], weights=(preds == labels)[known].double(), minlength=num_known)
    counts = torch.bincount(labels[known], minlength=num_known).double()
    return hits / counts  # 0 / 0: NaN


def largest_recall_changes(reference: dict, result: dict, num_known: int, limit: int = 10) -> list[tuple[int, float]]:
    """``(class id, change)`` of the at most ``limit`` known classes whose recall changed most from ``reference`` to
    ``result`` (two runs' results on one split: ``preds`` and ``labels``), ``change`` the signed difference
    ``result - reference``; by decreasing size of the change, then class id. A class without images in either run,
    and one whose recall did not change, is left out."""
    change = per_class_recall(result["preds"], result["labels"], num_known) - per_class_recall(
        reference["preds"], reference["labels"], num_known
    )
    changed = [(c, float(change[c])) for c in range(num_known) if not torch.isnan(change[c]) and change[c] != 0]
    return sorted(changed, key=lambda item: (-abs(item[1]), item[0]))[:limit]


def per_class_table(results: dict[str, dict], class_names: list[str]) -> list[dict]:
    """The rows of every split of an evaluation's results (split -> ``ood``, ``preds``, ``labels``, ``threshold``,
    as :attr:`~uft.evaluation.SplitEvaluation.results` and ``scores.pt`` hold them), split after split."""
    return [
        row
        for split, r in results.items()
        for row in per_class_rows(split, r["ood"], r["preds"], r["labels"], r["threshold"], class_names)
    ]


def per_class_csv(rows: list[dict]) -> str:
    """The CSV text of ``rows``: a header of :data:`PER_CLASS_COLUMNS`, the recall to 6 decimals, None empty."""
    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(PER_CLASS_COLUMNS)
    for row in rows:
        cells = [row[name] for name in PER_CLASS_COLUMNS]
        writer.writerow(["" if v is None else f"{v:.6f}" if isinstance(v, float) else v for v in cells])
    return handle.getvalue()


def write_per_class_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """``rows`` as ``path``, whole or not at all (:func:`~uft.atomic_files.write_atomic`)."""
    text = per_class_csv(rows)
    write_atomic(path, lambda f: f.write(text))
