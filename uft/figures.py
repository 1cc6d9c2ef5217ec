"""Pictures of an evaluation: ROC curves, OOD-score histograms with the decision threshold, per-class accuracy,
reliability diagrams; and across runs, the largest changes of per-class recall.

Plain matplotlib through its object API (``matplotlib.figure.Figure``), so no display and no global backend are
touched; every function returns a figure, which the caller saves or logs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
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


def reliability_figure(confidence: Tensor, correct: Tensor, bins: int, title: str) -> Figure:
    """Reliability diagram (Guo et al., ICML 2017): per equal-width confidence bin of
    :func:`~uft.metrics.calibration_bins`, the accuracy (bars) and the mean confidence (dots) with the gap between
    them shaded, against the diagonal of perfect calibration, the ECE in the legend; below, the samples per bin."""
    from uft.metrics import calibration_bins, expected_calibration_error

    counts, accuracy, mean_confidence = calibration_bins(confidence, correct, bins)
    filled = (counts > 0).numpy()
    centers = ((torch.arange(bins, dtype=torch.float64) + 0.5) / bins).numpy()[filled]
    accuracy, mean_confidence = accuracy.numpy()[filled], mean_confidence.numpy()[filled]
    fig = Figure(figsize=(4.8, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ece = expected_calibration_error(confidence, correct, bins)
    top.bar(
        centers, accuracy, width=1 / bins, edgecolor="black", linewidth=0.5, label=f"accuracy (ECE {100 * ece:.1f})"
    )
    gap = mean_confidence - accuracy
    top.bar(centers, gap, bottom=accuracy, width=1 / bins, color="tab:red", alpha=0.3, hatch="//", label="gap")
    top.plot(centers, mean_confidence, "o", color="tab:red", markersize=3, label="mean confidence")
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left", fontsize="small")
    bars = bottom.bar(centers, counts.numpy()[filled], width=1 / bins, color="grey", edgecolor="black", linewidth=0.5)
    bottom.bar_label(bars, fontsize="x-small")
    bottom.set(xlabel="confidence (top probability)", ylabel="images")
    bottom.margins(y=0.25)  # room for the counts above the bars
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def recall_changes_figure(panels: dict[str, list[tuple[str, float]]], title: str) -> Figure:
    """One panel per ``label -> [(class name, change), ...]`` (at least one; the changes of
    :func:`~uft.per_class.largest_recall_changes`): horizontal bars of the change of per-class recall in percentage
    points, gains in green and losses in red, the largest gain at the top; one change axis for every panel, so the
    panels compare."""
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    tallest = max((len(changes) for changes in panels.values()), default=1)
    fig = Figure(figsize=(4.2 * columns, rows * max(2.2, 0.26 * tallest + 1.2)), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    reach = max((abs(d) for changes in panels.values() for _, d in changes), default=0.0)
    limit = 100 * reach * 1.1 or 1.0  # symmetric about 0, past the longest bar; 1 point when nothing changed
    for ax, (label, changes) in zip(axes, panels.items()):
        ordered = sorted(changes, key=lambda item: item[1])  # barh draws from the bottom: largest gain on top
        values = [100 * d for _, d in ordered]
        ax.barh(range(len(ordered)), values, color=["tab:green" if v > 0 else "tab:red" for v in values])
        ax.set_yticks(range(len(ordered)), [name for name, _ in ordered], fontsize="small")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set(xlim=(-limit, limit), xlabel="change of recall (points)")
        ax.set_title(label, fontsize="medium")
        if not ordered:
            ax.text(0.5, 0.5, "no class changed", transform=ax.transAxes, ha="center", va="center")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def evaluation_figures(results: dict[str, dict], class_names: list[str]) -> dict[str, Figure]:
    """``name -> figure`` for the evaluation results of each split (``ood``, ``preds``, ``labels``, ``threshold``,
    ``confidence``, ``bins``): one ROC figure over the splits, and per split the score histogram, the per-class
    accuracy and the reliability diagram of the known-class samples."""
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
            correct = (r["preds"] == r["labels"])[known]
            title = f"{split}: calibration of the known classes"
            figures[f"{split}_reliability"] = reliability_figure(r["confidence"][known], correct, r["bins"], title)
    return figures


def save_figures(figures: dict[str, Figure], folder: Path) -> list[Path]:
    """Each figure as ``<folder>/<name>.png``, written whole or not at all (:mod:`uft.atomic_files`)."""
    paths = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        write_atomic(path, lambda f, fig=fig: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"), binary=True)
        paths.append(path)
    return paths
