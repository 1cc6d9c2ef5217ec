"""The interface shared by all unsupervised objectives."""

from __future__ import annotations

from torch import Tensor, nn


class Objective(nn.Module):
    """Base class of an unsupervised objective.

    Subclasses implement ``forward(logits, weights)``. ``needs_confidence`` tells the module to run the one-off
    confidence pass over the unlabeled target set before the first training step; the table it builds is passed
    back, per batch, as ``weights``. Objectives that do not need it receive ``None``.
    """

    needs_confidence: bool = False

    def confidence(self, cosine: Tensor) -> Tensor:
        """Per-sample confidence from zero-shot cosine similarities of shape (N, K); returns shape (N,)."""
        raise NotImplementedError(f"{type(self).__name__} does not use a confidence table")

    def forward(self, logits: Tensor, weights: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError
