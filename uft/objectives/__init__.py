"""Unsupervised objectives: plain ``nn.Module`` losses over class logits, no Lightning imports.

Every objective takes ``logits`` of shape (N, K), already multiplied by the logit scale, plus the per-sample
confidence ``weights`` of shape (N,) that the module looks up by sample index, and returns a scalar loss.
Objectives that need a confidence table set ``needs_confidence`` and say how a confidence is computed from the
zero-shot cosine similarities in :meth:`Objective.confidence`.
"""

from uft.objectives.base import Objective
from uft.objectives.entropy import UEO, entropy

__all__ = ["UEO", "Objective", "entropy"]
