"""What crosses the boundary between the model and the data beyond batches, declared once: what the LightningModule
reads from the data (:class:`TargetData`), what the data reads from the LightningModule (:class:`ImagePreprocessing`)
and what a callback reads from the data (:class:`SkippedImagesRecord`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from torch import Tensor

from uft.clip import ImagePreprocess
from uft.data.skipped import SkippedImages
from uft.online import OnlineAdaptation


@runtime_checkable
class TargetData(Protocol):
    """The data side of training with a per-sample table (confidence weights, pseudo-labels, oracle labels).

    The known class names reach the model through ``UFTModule(class_names=...)`` (linked by the CLI); the rest is
    read from the trainer's data module once it is set up (``setup``), never at construction.
    """

    @property
    def eval_splits(self) -> list[str]:
        """Names of the evaluation splits the data serves, in dataloader order (``val``/``test`` loaders)."""
        ...

    #: Whether every target image has a label (oracle objectives need them).
    target_labeled: bool

    #: Whether a finding of the preflight (:mod:`uft.preflight`: accuracy near chance, predictions piled onto one
    #: class) stops the run with an error instead of a warning.
    strict_preflight: bool

    @property
    def num_target_samples(self) -> int:
        """Size of the whole target set; sample indices run from 0 to this minus one."""
        ...

    def confidence_dataloader(self, every: int = 1) -> Iterable[tuple[Tensor, Tensor]]:
        """``(images, sample index)`` batches of this process's share of the target set, evaluation transform;
        over all processes together, every sample exactly once. With ``every`` above 1, of every ``every``-th sample
        only (the preflight's spread subset, :func:`uft.preflight.spread`), indexed by position in that subset
        (sample ``index * every``)."""
        ...

    def target_keys(self) -> Tensor:
        """One int64 key per target sample (its path and label), by sample index: equal keys, the same list."""
        ...

    def describe_target(self, index: int) -> str:
        """Target sample ``index`` for a message: its path, and its label where it has one."""
        ...

    def target_labels(self) -> Tensor:
        """Labels of the target set by sample index. Read by evaluation and oracle objectives only."""
        ...

    def report_skipped(self, split: str, indices: list[int]) -> None:
        """Samples of ``split`` (``target`` or an evaluation split) whose image could not be read: the batch held a
        placeholder (``readable`` false, :mod:`uft.data.batch`). Called with the same indices on every process."""
        ...

    def skipped_indices(self, split: str) -> list[int]:
        """Samples of ``split`` found unreadable so far, also before a resume: they never train."""
        ...


@runtime_checkable
class TargetStream(Protocol):
    """What an online run's evaluation reads beyond :class:`TargetData`: the segments of the stream (the domains of
    a continual stream), reported one by one."""

    def target_segments(self) -> list[tuple[str, range]]:
        """Each segment's name and its sample indices, in stream order; empty when the stream has none."""
        ...


@runtime_checkable
class OnlineLearner(Protocol):
    """What the data module reads from the LightningModule at ``setup`` for its training stream: the online
    protocol (:class:`~uft.online.OnlineAdaptation`: steps per batch, augmentation), or ``None`` for offline
    epochs."""

    online: OnlineAdaptation | None


@runtime_checkable
class ImagePreprocessing(Protocol):
    """What the data module reads from the LightningModule at ``setup``: the image preprocessing its model expects,
    which the transforms follow."""

    preprocess: ImagePreprocess


@runtime_checkable
class SkippedImagesRecord(Protocol):
    """What the ``skipped_images.txt`` callback reads from the data module: the run's record of unreadable images."""

    skipped_images: SkippedImages
