"""What a loader yields: images with their sample indices and an explicit readable column.

A dataset cannot raise for one bad file without ending the run, and loader workers cannot tell the main process
anything but the batch. So an unreadable image comes back as a placeholder with ``readable`` false, and whoever
consumes the batch drops its row and reports the sample (:class:`~uft.data.skipped.SkippedImages`). Whether a batch
holds any such row is also kept as a plain ``bool`` (``all_readable``), decided where the batch is collated: the
consumer reads it on the host, so the common case (every image read) costs no wait on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import default_collate


@dataclass
class Batch:
    """One batch of a target, evaluation or prediction loader.

    Lightning moves it to the device field by field (it is a dataclass); ``all_readable``, a plain ``bool``, stays
    on the host.

    Attributes:
        images: the transformed images, (N, 3, H, W); a blank placeholder where ``readable`` is false.
        index: each row's sample index: its position in the split's sample list.
        readable: whether each row's image could be read.
        labels: class ids (evaluation splits only; ``None`` elsewhere: training never sees a label).
        all_readable: ``bool(readable.all())``, known on the host.
    """

    images: Tensor
    index: Tensor
    readable: Tensor
    labels: Tensor | None = None
    all_readable: bool = True

    def __len__(self) -> int:
        return len(self.index)

    def to(self, device: torch.device | str) -> Batch:
        """The batch with its tensors on ``device`` (for passes outside Lightning's loops)."""
        labels = None if self.labels is None else self.labels.to(device)
        return Batch(self.images.to(device), self.index.to(device), self.readable.to(device), labels, self.all_readable)

    def unreadable_indices(self) -> list[int]:
        """Sample indices of the rows whose image could not be read (none without a device wait when all were)."""
        return [] if self.all_readable else self.index[~self.readable].tolist()

    def readable_rows(self) -> Batch:
        """The batch without its unreadable rows (itself when all were read)."""
        if self.all_readable:
            return self
        keep = self.readable
        labels = None if self.labels is None else self.labels[keep]
        return Batch(self.images[keep], self.index[keep], keep[keep], labels, True)


def collate(items: list[dict]) -> Batch:
    """The loaders' ``collate_fn``: dataset items (``image``, ``index``, ``readable`` and, for evaluation, ``label``)
    into one :class:`Batch`, with ``all_readable`` decided here, on the CPU."""
    fields = default_collate(items)
    readable = fields["readable"]
    return Batch(fields["image"], fields["index"], readable, fields.get("label"), bool(readable.all()))
