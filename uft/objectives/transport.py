"""POUF-style transport between image features and class prompts (Tanwisuth et al., "POUF: Prompt-oriented
unsupervised fine-tuning for large pre-trained models", ICML 2023, arXiv 2305.00350)."""

from __future__ import annotations

import torch
from torch import Tensor

from uft.objectives.base import Objective
from uft.objectives.entropy import entropy


class POUF(Objective):
    """Transport cost between a batch of images and the class prompts, plus entropy regularisation.

    With cost ``C_ik = 1 - cos(f_i, t_k)`` and ``p = softmax(logits)``::

        L = mean_i sum_k C_ik softmax_k(logits)_ik  +  mean_k sum_i C_ik softmax_i(logits)_ik
            + entropy_weight * mean_i H(p_i)  -  diversity_weight * H(mean_i p_i)

    The second softmax runs over the batch (each class distributes its mass over the images), so this is a
    batch-level loss. The released POUF code weights the information-maximisation pair by 0.3 each
    (``entropy_weight = diversity_weight = 0.3``); the default here is conditional entropy alone at 0.3.

    Args:
        entropy_weight: weight of the mean conditional entropy.
        diversity_weight: weight of the (subtracted) marginal entropy.
    """

    def __init__(self, entropy_weight: float = 0.3, diversity_weight: float = 0.0) -> None:
        super().__init__()
        self.entropy_weight = entropy_weight
        self.diversity_weight = diversity_weight

    def forward(self, logits: Tensor, table: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        if cosine is None:
            raise ValueError("POUF needs the cosine similarities of the batch")
        cost = 1.0 - cosine
        to_classes = (cost * torch.softmax(logits, dim=1)).sum(dim=1).mean()
        to_images = (cost * torch.softmax(logits, dim=0)).sum(dim=0).mean()
        probs = torch.softmax(logits, dim=1)
        loss = to_classes + to_images + self.entropy_weight * entropy(probs).mean()
        if self.diversity_weight:
            loss = loss - self.diversity_weight * entropy(probs.mean(dim=0))
        return loss
