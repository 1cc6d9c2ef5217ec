"""Pictures of an evaluation: ROC curves, OOD-score histograms with the decision threshold, per-class accuracy.

Plain matplotlib through its object API (``matplotlib.figure.Figure``), so no display and no global backend are
touched; every function returns a figure, which the caller saves or logs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from uft.atomic_files import write_atomic


def roc_curve(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """False- and true-positive rates at every threshold, from accepting nothing to accepting everything."""
    order = torch.argsort(scores.double(), descending=True)
    hits = positive[order].double()
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), hits.cumsum(0) / hits.sum().clamp(min=1)])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - hits).cumsum(0) / (1 - hits).sum().clamp(min=1)])
    return fpr, tpr


def roc_figure(curves: dict[str, tuple[Tensor, Tensor]], title: str) -> Figure:
    """ROC curves (known = positive) of several score sets ``label -> (scores, known)``, with their AUROC."""
    from uft.metrics import binary_auroc

    fig = Figure(figsize=(4.8, 4.4))
    ax = fig.subplots()
    for label, (scores, known) in curves.items():
        fpr, tpr = roc_curve(scores, known)
        ax.plot(fpr.numpy(), tpr.numpy(), label=f"{label} (AUROC {100 * binary_auroc(scores, known):.1f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="unknown images accepted (FPR)", ylabel="known images accepted (TPR)", title=title)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def score_histogram(scores: Tensor, known: Tensor, threshold: float, title: str) -> Figure:
    """Histograms of the OOD score of known and unknown images, and the threshold of the unknown decision."""
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    values = scores.double().numpy()
    bins = 40
    if known.any():
        ax.hist(values[known.numpy()], bins=bins, alpha=0.6, label=f"known classes ({int(known.sum())})")
    if (~known).any():
        ax.hist(values[~known.numpy()], bins=bins, alpha=0.6, label=f"unknown classes ({int((~known).sum())})")
    if threshold == threshold and abs(threshold) != float("inf"):  # not NaN, not infinite
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="OOD score (higher: more likely known)", ylabel="images", title=title)
    ax.legend(fontsize="small")
    return fig


def per_class_figure(preds: Tensor, labels: Tensor, class_names: list[str], title: str) -> Figure:
    """Accuracy of each known class present, as bars in class order."""
    num_known = len(class_names)
    known = labels < num_known
    hits = torch.bincount(labels[known], weights=(preds == labels)[known].double(), minlength=num_known)
    counts = torch.bincount(labels[known], minlength=num_known).double()
    present = (counts > 0).nonzero().squeeze(1).tolist()
    fig = Figure(figsize=(max(5.0, 0.28 * len(present) + 1.5), 3.6))
    ax = fig.subplots()
    ax.bar(range(len(present)), [100 * float(hits[i] / counts[i]) for i in present])
    ax.set_xticks(range(len(present)), [class_names[i] for i in present], rotation=90, fontsize="small")
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title=title)
    return fig


def evaluation_figures(results: dict[str, dict], class_names: list[str]) -> dict[str, Figure]:
    """``name -> figure`` for the evaluation results of each split (``ood``, ``preds``, ``labels``, ``threshold``):
    one ROC figure over the splits, and per split the score histogram and the per-class accuracy."""
    num_known = len(class_names)
    figures = {}
    curves = {split: (r["ood"], r["labels"] < num_known) for split, r in results.items()}
    detectable = {split: c for split, c in curves.items() if c[1].any() and (~c[1]).any()}
    if detectable:
        figures["roc"] = roc_figure(detectable, "known vs unknown")
    for split, r in results.items():
        known = r["labels"] < num_known
        figures[f"{split}_scores"] = score_histogram(r["ood"], known, r["threshold"], f"{split}: OOD score")
        if known.any():
            figures[f"{split}_per_class"] = per_class_figure(r["preds"], r["labels"], class_names, f"{split}: accuracy")
    return figures


def save_figures(figures: dict[str, Figure], folder: Path) -> list[Path]:
    """Each figure as ``<folder>/<name>.png``, written whole or not at all (:mod:`uft.atomic_files`)."""
    paths = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        write_atomic(path, lambda f, fig=fig: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"), binary=True)
        paths.append(path)
    return paths
