"""The interface shared by all unsupervised objectives."""

from __future__ import annotations

from torch import Tensor, nn


class Objective(nn.Module):
    """Base class of an unsupervised objective: ``forward(logits, table, cosine)`` returns a scalar loss.

    - ``logits`` (N, K): cosine similarities multiplied by the module's logit scale;
    - ``cosine`` (N, K): the plain cosine similarities (for objectives that use them as costs);
    - ``table`` (N,), the second positional argument (UEO's public API calls it ``weights``): this batch's
      rows of a per-sample table that :meth:`prepare` built once, before the first training step, from the
      zero-shot cosine similarities of the whole target set (confidence weights, pseudo-labels, ...). Only
      objectives with ``needs_table`` get one; it is saved with checkpoints.

    ``uses_labels`` marks analysis objectives (oracles) whose table is built from the target labels: the module
    refuses to train them on unlabeled data and says in the log that they read labels.
    """

    needs_table: bool = False
    uses_labels: bool = False

    def table_source(self) -> str:
        """What made the per-sample table: the class and its settings, e.g. ``UEO(tau=1.0, trade=1.0)``. Stored
        with checkpoints, so that a table is never reused by another objective."""
        settings = {
            k: v
            for k, v in vars(self).items()
            if k != "training" and not k.startswith("_") and isinstance(v, (int, float, str))
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in sorted(settings.items()))})"

    def prepare(self, cosine: Tensor, labels: Tensor | None = None) -> Tensor:
        """The per-sample table from zero-shot cosine similarities (N, K) of the target set; shape (N,)."""
        raise NotImplementedError(f"{type(self).__name__} does not use a per-sample table")

    def forward(self, logits: Tensor, table: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface
