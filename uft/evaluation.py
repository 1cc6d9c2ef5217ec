"""One evaluation pass over the labeled splits: each split's open-set metrics, by dataloader index, with the
unreadable images left out and the last results kept for pictures."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from uft.data.batch import Batch
from uft.data.skipped import UnreadableSeen
from uft.errors import InputError
from uft.metrics import OpenSetMetrics
from uft.scores import OODScore, ThresholdRule
from uft.selection import TargetCosines

EVAL_SPLITS = ("test", "target")  # what the data module serves when the target data has labels
TARGET = "target"  # the split of the target set itself, whose cosines also feed the label-free criteria


class SplitEvaluation(nn.Module):
    """The :class:`~uft.metrics.OpenSetMetrics` of every evaluation split.

    Args:
        num_known: K, the number of known classes.
        ood_score: the score that ranks images and drives the unknown decision.
        unknown_rule: the label-free rule that picks each split's threshold.
        splits: names of the evaluation dataloaders, in order; default ``["test", "target"]``. :meth:`serve` sets
            the names a data module declares.
        logit_scale: the model's training scale, of the probabilities whose calibration and likelihood are
            measured (``ece``, ``nll``).
    """

    def __init__(
        self,
        num_known: int,
        ood_score: OODScore,
        unknown_rule: ThresholdRule,
        splits: list[str] | None = None,
        logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        self.num_known, self.ood_score, self.unknown_rule = num_known, ood_score, unknown_rule
        self.logit_scale = logit_scale
        names = dict.fromkeys([*EVAL_SPLITS, *(splits or [])])
        self.metrics = nn.ModuleDict({split: self._metric() for split in names})
        self.configured = None if splits is None else list(splits)
        self.names = list(splits or EVAL_SPLITS)  # by dataloader index
        self.results: dict[str, dict] = {}  # the last evaluation's per-sample scores, by split (for pictures)
        self.unreadable = UnreadableSeen()  # unreadable images met in this pass (or a prediction)
        self.segments: dict[str, list[tuple[str, range]]] = {}  # of the splits cut into segments
        # The target split's cosines by sample index (the model-selection criteria's input, uft.selection).
        self.target = TargetCosines(num_known)
        self.target_cosines: tuple[Tensor, Tensor] | None = None  # the last evaluation's (index, cosine), if any

    def _metric(self) -> OpenSetMetrics:
        return OpenSetMetrics(self.num_known, self.ood_score, self.unknown_rule, logit_scale=self.logit_scale)

    def serve(self, served: list[str], segments: dict[str, list[tuple[str, range]]] | None = None) -> None:
        """The data's evaluation splits, in dataloader order; configured names, when given, must agree. A split cut
        into ``segments`` (the domains of a continual stream: name and sample indices) is also reported per segment,
        as the split ``<split>.<segment>``."""
        served = list(served)
        if self.configured is not None and served != self.configured:
            raise InputError(
                f"the data serves the evaluation splits {served} but model.eval_splits is {self.configured}: leave "
                "model.eval_splits unset (the data declares its splits)"
            )
        self.names = served
        self.segments = {split: list(cut) for split, cut in (segments or {}).items() if cut}
        for split, cut in self.segments.items():
            for name, _ in cut:
                key = _segment_key(split, name)
                if key not in self.metrics:
                    self.metrics[key] = self._metric()

    def readable(self, dataloader_idx: int, batch: Batch) -> tuple[str, Batch]:
        """The split of dataloader ``dataloader_idx`` and its ``batch`` without unreadable images (remembered)."""
        split = self.names[dataloader_idx]
        return split, self.unreadable.readable(split, batch)

    def update(self, split: str, scores: Tensor, labels: Tensor, index: Tensor | None = None) -> None:
        """One batch of ``split``: class scores, labels and (for a split cut into segments) sample indices."""
        if not torch.isfinite(scores).all():
            raise InputError(
                f"the model gives non-finite scores on the {split} split: its parameters are not finite (a diverged "
                "run's checkpoint?); no metric can be computed from them"
            )
        self.metrics[split].update(scores, labels)
        if split == TARGET and index is not None:
            self.target.update(scores, index)
        for name, members in self.segments.get(split, []) if index is not None else []:
            inside = (index >= members.start) & (index < members.stop)
            if bool(inside.any()):
                self.metrics[_segment_key(split, name)].update(scores[inside], labels[inside])

    def compute(self, keep: bool = True) -> dict[str, dict[str, Tensor]]:
        """Every split's metrics (a collective: every process calls it, also for a split it got no batch of), the
        splits with samples only; the states are reset. ``keep=False`` (a sanity check) computes nothing."""
        values = {}
        for split, metric in self.metrics.items():
            if keep:
                computed = metric.compute()
                if computed["samples"]:
                    values[split.replace(SEGMENT_MARK, ".")] = computed
                    if SEGMENT_MARK not in split:  # pictures are of whole splits
                        self.results[split] = metric.last
            metric.reset()
        self.target_cosines = None
        if keep:
            index, cosine = self.target.compute()
            self.target_cosines = (index, cosine) if len(index) else None
        self.target.reset()
        return values


SEGMENT_MARK = "|"  # between split and segment in the metrics' keys (a module name cannot hold the reported ".")


def _segment_key(split: str, segment: str) -> str:
    return f"{split}{SEGMENT_MARK}{segment}"
