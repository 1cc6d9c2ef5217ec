"""Map-style datasets over image lists, with augmentations seeded per sample and epoch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from uft.data.lists import Sample
from uft.data.samplers import item_seed
from uft.data.skipped import UNREADABLE, mark, read_rgb

PLACEHOLDER_SIZE = 32  # side of the blank image that stands in for an unreadable one


class ImageListDataset(Dataset):
    """Images of a sample list, returned as ``(image, index)`` or, with ``with_labels``, ``(image, label, index)``.

    The index is the sample's position in the list: the key of per-sample state such as confidence weights.
    With ``seed`` set, items are addressed by ``(index, epoch)`` (see :class:`~uft.data.samplers.GlobalBatchSampler`)
    and the random transform of each is seeded from ``(seed, epoch, index)``, so augmentations replay exactly on
    resume and on any number of processes or loader workers.

    An image that cannot be read (missing, zero-byte, truncated, corrupt) does not end the run: a blank image
    stands in for it and its index is marked (:func:`uft.data.skipped.mark`), so that the consumer of the batch
    drops the row and reports the sample.

    Args:
        samples: the images and their labels.
        image_dir: directory the sample paths are relative to.
        transform: applied to the RGB PIL image.
        with_labels: also return the label (evaluation only).
        seed: seed of per-item augmentation; ``None`` leaves the global random state alone.
    """

    def __init__(
        self,
        samples: list[Sample],
        image_dir: Path,
        transform: Callable,
        with_labels: bool = False,
        seed: int | None = None,
    ) -> None:
        self.samples = samples
        self.image_dir = Path(image_dir)
        self.transform = transform
        self.with_labels = with_labels
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample, returned = self.samples[index], index
        try:
            img = read_rgb(self.image_dir / sample.path)
        except UNREADABLE:
            img, returned = Image.new("RGB", (PLACEHOLDER_SIZE, PLACEHOLDER_SIZE)), mark(index)
        if self.seed is None:
            image = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(item_seed(self.seed, epoch, index))
                image = self.transform(img)
        return (image, sample.label, returned) if self.with_labels else (image, returned)
