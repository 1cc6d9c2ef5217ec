"""Map-style datasets over image lists, and a sampler whose order depends only on the seed and the epoch."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from uft.data.lists import Sample


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for the random augmentation of one sample in one epoch, independent of workers and processes."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


class ImageListDataset(Dataset):
    """Images of a sample list, returned as ``(image, index)`` or, with ``with_labels``, ``(image, label, index)``.

    The index is the sample's position in the list: the key of per-sample state such as confidence weights.
    With ``seed`` set, items are addressed by ``(index, epoch)`` (see :class:`EpochSampler`) and the random
    transform of each is seeded from ``(seed, epoch, index)``, so augmentations replay exactly on resume.

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
        sample = self.samples[index]
        with Image.open(self.image_dir / sample.path) as img:
            img = img.convert("RGB")
        if self.seed is None:
            image = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(item_seed(self.seed, epoch, index))
                image = self.transform(img)
        return (image, sample.label, index) if self.with_labels else (image, index)


class EpochSampler(Sampler):
    """A random permutation drawn from ``(seed, epoch)`` that yields ``(index, epoch)`` keys.

    Lightning calls ``set_epoch`` at the start of each epoch, so a run resumed from a checkpoint sees exactly the
    order an uninterrupted run would.

    Args:
        num_samples: dataset length.
        seed: base seed of the permutation.
        shuffle: draw a permutation (otherwise the identity order).
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, -1))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        return iter([(i, self.epoch) for i in order])
