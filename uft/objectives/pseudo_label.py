"""UPL-style self-training on confident zero-shot pseudo-labels (after Huang et al., "Unsupervised Prompt
Learning for Vision-Language Models", arXiv 2204.03649)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from uft.objectives.base import Objective

NO_LABEL = -1


class UPL(Objective):
    """Cross-entropy on the ``top_k`` most confident zero-shot predictions of each known class.

    Before training, the zero-shot model labels every target image with its arg-max class; for each class, the
    ``top_k`` images predicted as that class with the highest probability ``softmax(cos / temperature)`` keep
    their pseudo-label, every other image gets none. Training minimises the cross-entropy of the kept images only
    (a batch without any contributes zero loss).

    Args:
        top_k: pseudo-labelled images kept per class.
        temperature: softmax temperature over cosine similarities for ranking (0.01: CLIP's logit scale 100).
    """

    needs_table = True

    def __init__(self, top_k: int = 16, temperature: float = 0.01) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.top_k = top_k
        self.temperature = temperature

    def prepare(self, cosine: Tensor, labels: Tensor | None = None) -> Tensor:
        probs = torch.softmax(cosine / self.temperature, dim=-1)
        confidence, predicted = probs.max(dim=-1)
        table = torch.full_like(predicted, NO_LABEL)
        for k in predicted.unique():
            members = (predicted == k).nonzero().squeeze(1)
            keep = members[confidence[members].argsort(descending=True, stable=True)[: self.top_k]]
            table[keep] = k
        return table

    def forward(self, logits: Tensor, table: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        if table is None:
            raise ValueError("UPL needs the pseudo-label table")
        kept = table != NO_LABEL
        if not kept.any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits[kept], table[kept].long())
