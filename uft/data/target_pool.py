"""The target pool of a data configuration, resolved: which images are the unlabeled target set, the labeled test
split and the prediction set, and where each split's images are read. A pure function of the configuration (it reads
list files, folders and shard indexes, writes nothing); the data module calls it in ``setup``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lightning.pytorch.utilities import rank_zero_warn

from uft.data.datasets import ImageFiles, ImageSource
from uft.data.lists import (
    IMAGE_SUFFIXES,
    UNLABELED,
    Sample,
    holdout_mask,
    read_list_file,
    resolve_domain,
    scan_image_folder,
)
from uft.data.shards import SAMPLES_FILE, ImageShards
from uft.data.splits import ClassSplit
from uft.errors import InputError


@dataclass(frozen=True)
class TargetPool:
    """The samples of every split (sample indices are positions in these lists) and where their images are."""

    target_samples: list[Sample]  # the unlabeled training set: the pool (less a held-out test share), target classes
    test_samples: list[Sample]  # the labeled test split, test classes (empty: none)
    predict_samples: list[Sample]  # what `uft predict` reads (labels dropped)
    images: dict[str, ImageSource]  # split (target, test, predict) -> where its images are read
    target_labeled: bool  # every target image has a label (then ``target`` is an evaluation split too)
    image_dir: Path | None  # root/domain; None when only shards were read

    def splits(self) -> dict[str, list[Sample]]:
        """Every split's samples by name."""
        return {"target": self.target_samples, "test": self.test_samples, "predict": self.predict_samples}


class _ImageDir:
    """``root/domain``, resolved on first need: with shards the root is read only when files are named."""

    def __init__(self, root: str | None, domain: str | None) -> None:
        self.root, self.domain, self.path = root, domain, None

    def __call__(self, option: str) -> Path:
        """The image directory, which ``option`` needs (its paths are relative to it)."""
        if self.path is None:
            if self.root is None:
                raise InputError(f"{option} names image files, which need data.root (the folder they are relative to)")
            self.path = resolve_domain(self.root, self.domain)
        return self.path


def resolve_target_pool(
    class_names: list[str],
    split: ClassSplit,
    *,
    # where the images are
    root: str | None = None,
    domain: str | None = None,
    target_shards: str | None = None,
    shard_cache: str | None = None,
    # which images each split holds
    train_list: str | None = None,
    test_list: str | None = None,
    predict_list: str | None = None,
    protocol: Literal["holdout", "paper"] = "holdout",
    holdout_fraction: float = 0.3,
    holdout_seed: int = 0,
) -> TargetPool:
    """The target pool of a data configuration (the arguments are :class:`~uft.data.datamodule.TargetDataModule`'s,
    ``class_names`` read). Raises :class:`~uft.errors.InputError` on a bad list, folder or shard index, or an empty
    target set."""
    target_ids, test_ids = split.resolve(len(class_names), "data.class_names")
    image_dir = _ImageDir(root, domain)
    if not target_shards:
        image_dir("the target set (data.train_list or an image folder)")
    num_classes = len(class_names)
    pool_images, pool = _target_source(class_names, image_dir, train_list, target_shards, shard_cache)
    test_images = pool_images
    labeled = all(s.label != UNLABELED for s in pool)
    if test_list:
        test_images = ImageFiles(image_dir("data.test_list"))
        test = read_list_file(test_list, test_images.folder, num_classes)
        if any(s.label == UNLABELED for s in test):
            raise InputError(f"test list {test_list} must give a label on every line")
    elif protocol == "paper" and labeled:
        test = list(pool)  # the whole domain, every class; the target set is its images of the target classes
    elif labeled:
        held = holdout_mask(pool, holdout_fraction, holdout_seed)
        test = [s for s, h in zip(pool, held) if h]
        pool = [s for s, h in zip(pool, held) if not h]
    else:
        test = []
    target = _restrict(pool, target_ids) if labeled else pool
    test = _restrict(test, test_ids)
    if not target:
        where = train_list or target_shards or image_dir.path
        raise InputError(f"empty target set: no image of target classes {split.target_classes!r} in {where}")
    if test_list and not test:
        raise InputError(f"empty test set: no image of test classes {split.test_classes!r} in {test_list}")
    predict_images, predict = _predict_source(predict_list, image_dir, pool_images, target, num_classes)
    images = {"target": pool_images, "test": test_images, "predict": predict_images}
    return TargetPool(target, test, predict, images, labeled, image_dir.path)


def _target_source(
    class_names: list[str], image_dir: _ImageDir, train_list: str | None, target_shards: str | None, cache: str | None
) -> tuple[ImageSource, list[Sample]]:
    """Where the target pool's images are read from, and the pool (every image, in sample-index order)."""
    if target_shards:
        if train_list:
            raise InputError("data.train_list and data.target_shards both name the target images: set one")
        shards = ImageShards(target_shards, cache)
        _check_shards(shards, target_shards, class_names)
        return shards, shards.samples
    images = ImageFiles(image_dir("the target set"))
    if train_list:
        return images, read_list_file(train_list, images.folder, len(class_names))
    return images, scan_image_folder(images.folder, class_names)


def _check_shards(shards: ImageShards, location: str, class_names: list[str]) -> None:
    """Shards whose labels mean other classes than ``class_names`` are refused; unchecked ones are warned about."""
    labeled = any(s.label != UNLABELED for s in shards.samples)
    stored = shards.class_names
    if stored is not None and stored != class_names:
        # Labels are class ids: under other names (or another order) every label would silently mean another class.
        i = next(i for i, (a, b) in enumerate(zip([*stored, None], [*class_names, None])) if a != b)
        shard_name, configured = (repr(n[i]) if i < len(n) else "none" for n in (stored, class_names))
        raise InputError(
            f"data.target_shards: the shards at {location} were written for other class names than "
            f"data.class_names: class {i}: shards {shard_name}, configured {configured} ({len(stored)} and "
            f"{len(class_names)} names); configure the shards' class names, or write the shards again "
            "with `uft data shard --class-names`"
        )
    if not shards.has_metadata:
        rank_zero_warn(
            f"uft: the shards at {location} hold no uft_shards.json (written by an older `uft data "
            "shard`): their class names and sample list cannot be checked"
            + ("; their labels are taken to follow data.class_names" if labeled else "")
        )
    elif stored is None and labeled:
        rank_zero_warn(
            f"uft: the shards at {location} were written without --class-names: their labels are taken "
            "to follow data.class_names, unchecked"
        )
    for lineno, sample in enumerate(shards.samples, start=2):
        if sample.label >= len(class_names):
            raise InputError(
                f"{location}/{SAMPLES_FILE}:{lineno}: label {sample.label} is outside the "
                f"{len(class_names)} class names"
            )


def _predict_source(
    predict_list: str | None, image_dir: _ImageDir, target_images: ImageSource, target: list[Sample], num_classes: int
) -> tuple[ImageSource, list[Sample]]:
    """The prediction set and where its images are: a list file, a folder, or (by default) the target set."""
    if predict_list is None:
        return target_images, target
    folder = Path(predict_list)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"data.predict_list: no images under {folder}")
        return ImageFiles(folder), [Sample(str(p.relative_to(folder))) for p in files]
    images = ImageFiles(image_dir("data.predict_list"))
    listed = read_list_file(predict_list, images.folder, num_classes)
    return images, [Sample(s.path) for s in listed]  # labels are not read


def _restrict(samples: list[Sample], class_ids: list[int]) -> list[Sample]:
    keep = set(class_ids)
    return [s for s in samples if s.label in keep]
