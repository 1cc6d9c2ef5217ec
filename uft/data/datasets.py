"""Where images are read from (files in a folder, or shards), and the map-style dataset over a sample list with
augmentations seeded per sample and epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from PIL import Image
from torch.utils.data import Dataset

from uft.data.lists import Sample
from uft.data.samplers import item_seed
from uft.data.skipped import UNREADABLE, read_rgb, unreadable_files, unreadable_reason


@runtime_checkable
class ImageSource(Protocol):
    """Images addressed by the path a sample list gives (relative to the source). Instances are pickled into
    loader workers."""

    def read(self, path: str) -> Image.Image:
        """The decoded RGB image; raises one of :data:`uft.data.skipped.UNREADABLE` when it cannot be read."""
        ...

    def reason(self, path: str) -> str | None:
        """Why the image cannot be read, in a few words; ``None`` when it can."""
        ...

    def unreadable(self, paths: Iterable[str]) -> dict[int, tuple[str, str]]:
        """``{position: (path, reason)}`` of the ``paths`` that cannot be read (each decoded once)."""
        ...

    def describe(self, path: str) -> str:
        """Where the image is, for a message."""
        ...

    def order_groups(self, paths: list[str]) -> list[int] | None:
        """The storage unit of each image, which a training order should keep together (a shard), or ``None``
        when any order reads as fast."""
        ...


class ImageFiles:
    """Image files under one folder.

    Args:
        folder: the folder sample paths are relative to.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def read(self, path: str) -> Image.Image:
        return read_rgb(self.folder / path)

    def reason(self, path: str) -> str | None:
        return unreadable_reason(self.folder / path)

    def unreadable(self, paths: Iterable[str]) -> dict[int, tuple[str, str]]:
        return unreadable_files(self.folder, paths)

    def describe(self, path: str) -> str:
        return str(self.folder / path)

    def order_groups(self, paths: list[str]) -> None:
        return None


PLACEHOLDER_SIZE = 32  # side of the blank image that stands in for an unreadable one


class ImageListDataset(Dataset):
    """Images of a sample list, each item a dict: ``image``, ``index``, ``readable`` and, with ``with_labels``,
    ``label`` (:func:`uft.data.batch.collate` makes a :class:`~uft.data.batch.Batch` of them).

    The index is the sample's position in the list: the key of per-sample state such as confidence weights.
    With ``seed`` set, items are addressed by ``(index, epoch)`` (see :class:`~uft.data.samplers.GlobalBatchSampler`)
    and the random transform of each is seeded from ``(seed, epoch, index)``, so augmentations replay exactly on
    resume and on any number of processes or loader workers.

    An image that cannot be read (missing, zero-byte, truncated, corrupt) does not end the run: a blank image
    stands in for it with ``readable`` false, so that the consumer of the batch drops the row and reports the
    sample.

    Args:
        samples: the images and their labels.
        images: where the sample paths are read from; a folder means the files in it.
        transform: applied to the RGB PIL image.
        with_labels: also return the label (evaluation only).
        seed: seed of per-item augmentation; ``None`` leaves the global random state alone.
    """

    def __init__(
        self,
        samples: list[Sample],
        images: ImageSource | str | Path,
        transform: Callable,
        with_labels: bool = False,
        seed: int | None = None,
    ) -> None:
        self.samples = samples
        self.images = images if isinstance(images, ImageSource) else ImageFiles(images)
        self.transform = transform
        self.with_labels = with_labels
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample, readable = self.samples[index], True
        try:
            img = self.images.read(sample.path)
        except UNREADABLE:
            img, readable = Image.new("RGB", (PLACEHOLDER_SIZE, PLACEHOLDER_SIZE)), False
        if self.seed is None:
            image = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(item_seed(self.seed, epoch, index))
                image = self.transform(img)
        item = {"image": image, "index": index, "readable": readable}
        return {**item, "label": sample.label} if self.with_labels else item
