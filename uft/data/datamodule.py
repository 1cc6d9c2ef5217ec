"""The LightningDataModule that streams unlabeled target images and the labeled evaluation splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader

from uft.atomic_files import write_text
from uft.clip import ImagePreprocess
from uft.data.batch import collate
from uft.data.datasets import ImageFiles, ImageListDataset, ImageSource
from uft.data.lists import (
    IMAGE_SUFFIXES,
    UNLABELED,
    Sample,
    holdout_mask,
    read_class_names,
    read_list_file,
    resolve_domain,
    sample_keys,
    scan_image_folder,
)
from uft.data.recipes import DataRecipe
from uft.data.samplers import BatchShardSampler, GlobalBatchSampler, ResumableLoader, per_process_batch
from uft.data.shards import SAMPLES_FILE, ImageShards
from uft.data.skipped import SkippedImages
from uft.data.splits import ClassSplit
from uft.data.transforms import eval_transform, train_transform
from uft.errors import InputError

SKIPPED_FILE = "skipped_images.txt"


class TargetDataModule(LightningDataModule):
    """Unlabeled target images of one domain, plus labeled evaluation splits.

    Target images come from a list file (``relative/path.jpg <label>`` per line, labels optional), from an
    ImageFolder tree ``root/domain/<class name>/*``, or from shards written by ``uft data shard`` from either
    (``target_shards``: a local folder or an object-store URL; the sample list and every per-sample index are the
    same as from the files, and training reads the shards one after another). Without a ``test_list``, the labeled
    ``test`` split follows ``protocol``: ``holdout`` holds out a deterministic ``holdout_fraction`` of the images
    (the rest, restricted to ``split.target_classes``, is the unlabeled ``target`` set); ``paper`` (the UEO
    reference's) tests on the domain's whole image list, every class, and trains on its images of the target
    classes. Loaders:

    - ``train``: ``(image, index)`` over the target set with the training transform;
    - ``val``/``test``: the evaluation splits ``test`` and ``target`` as ``(image, label, index)``; ``target`` labels
      are read by evaluation only, and the split is absent when the target list has no labels;
    - ``predict``: ``(image, index)`` over ``predict_list`` (default: the target set), evaluation transform;
    - the confidence pass: ``(image, index)`` over the target set with the evaluation transform.

    Transforms follow the model's preprocessing config, read from the LightningModule at ``setup``.

    An image that cannot be read during the run (missing, zero-byte, truncated, corrupt) is skipped: named in a
    warning once, never trained on nor evaluated, listed in ``skipped_images.txt`` in the run's log folder and
    counted in the final summary. More than ``max_skipped`` of a split stops the run with one error.

    On several processes every loader is one process's share of a single-process order
    (:mod:`uft.data.samplers`): ``batch_size`` is the global batch, split evenly over the processes, and each
    epoch's order depends only on ``seed``; evaluation counts every sample exactly once. Training uses only full
    global batches (the remainder of each epoch's order waits for a later epoch).

    Args:
        root: image root; images live in ``root/domain`` (or ``root`` when no domain is given). With
            ``target_shards`` it is read only when ``test_list`` or ``predict_list`` name files.
        class_names: all class names in class-id order (known classes first), or a text file with one per line.
        split: which class ids are known, in the target data and in the test data (a setting file sets it).
        domain: sub-folder of ``root``; spellings differing in spaces, underscores or case match.
        train_list: list file of the target images; if unset, the ImageFolder tree is scanned.
        test_list: list file of the labeled test images; if unset, images are held out from the target pool.
        protocol: where the labeled ``test`` split comes from when there is no ``test_list``: ``holdout`` (a
            fraction held out, never trained on) or ``paper`` (the whole domain, as the UEO reference evaluates:
            its numbers are comparable with published ones; the unlabeled training images are among them).
        holdout_fraction: fraction held out as ``test`` under the ``holdout`` protocol.
        holdout_seed: seed of that held-out split.
        batch_size: global training batch size (all processes together; each takes an equal share).
        eval_batch_size: batch size of evaluation, prediction and the confidence pass (per batch, on any number
            of processes).
        num_workers: data-loading worker processes.
        seed: seed of the shuffle order and augmentations; default: the run's ``seed_everything`` value, else 0
            (on several processes, rank 0's).
        crop_scale: scale range of the training RandomResizedCrop.
        recipe: makes the data into ``root`` (default: the recipe's own folder) when it is missing (e.g.
            ``uft.world.WorldBenchmark``); its class-name file and target and test lists are the defaults of
            ``class_names``, ``train_list`` and ``test_list``.
        max_skipped: share of a split's images that may be unreadable (skipped with a warning); beyond it the
            run stops.
        verify_images: decode every target and test image when the data is set up, before the model is loaded,
            and report the unreadable ones then (same rule as ``max_skipped``).
        predict_list: images for ``uft predict``: a list file (paths relative to the image directory, labels
            ignored) or a folder (every image under it); default: the target set.
        target_shards: shards of the target images (``uft data shard``), instead of ``train_list`` or the
            folder: a local folder or a URL such as ``s3://bucket/prefix`` (credentials from the environment, as the
            storage's client reads them). The held-out or ``paper`` test split is read from them too.
        shard_cache: where chunks of remote shards are kept (default: litdata's cache folder).
    """

    def __init__(
        self,
        root: str | None = None,
        class_names: list[str] | str | None = None,
        split: ClassSplit | None = None,
        domain: str | None = None,
        train_list: str | None = None,
        test_list: str | None = None,
        protocol: Literal["holdout", "paper"] = "holdout",
        holdout_fraction: float = 0.3,
        holdout_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        num_workers: int = 2,
        seed: int | None = None,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        recipe: DataRecipe | None = None,
        max_skipped: float = 0.01,
        verify_images: bool = False,
        predict_list: str | None = None,
        target_shards: str | None = None,
        shard_cache: str | None = None,
    ) -> None:
        super().__init__()
        if recipe is not None:  # its data set, made if missing; its files are the defaults of the paths below
            layout = recipe.ensure(root)
            root = str(layout.root)
            class_names = str(layout.class_names) if class_names is None else class_names
            if train_list is None and not target_shards:
                train_list = str(layout.target_list)
            if test_list is None and layout.test_list is not None:
                test_list = str(layout.test_list)
        if class_names is None:
            raise InputError("data.class_names is not set: give the class names (a list, or a file with one per line)")
        if split is None:
            raise InputError(
                "data.split is not set: add a setting, e.g. -c configs/setting/officehome/open_partial.yaml, or give "
                "--data.split.num_known"
            )
        self.class_names, names_source = read_class_names(class_names)
        self.split = split
        target_ids, test_ids = split.resolve(len(self.class_names), names_source)
        self._root, self._domain = root, domain
        self.image_dir = None  # root/domain; with shards resolved only when files are named
        if not target_shards:
            self._files_dir("the target set (data.train_list or an image folder)")
        num_classes = len(self.class_names)
        pool_images, pool = self._target_source(train_list, target_shards, shard_cache, num_classes)
        if not 0.0 <= holdout_fraction < 1.0:
            raise InputError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
        test_images = pool_images
        if test_list:
            test_images = ImageFiles(self._files_dir("data.test_list"))
            test = read_list_file(test_list, test_images.folder, num_classes)
            if any(s.label == UNLABELED for s in test):
                raise InputError(f"test list {test_list} must give a label on every line")
        elif protocol == "paper" and all(s.label != UNLABELED for s in pool):
            test = list(pool)  # the whole domain, every class; the target set is its images of the target classes
        elif all(s.label != UNLABELED for s in pool):
            held = holdout_mask(pool, holdout_fraction, holdout_seed)
            test = [s for s, h in zip(pool, held) if h]
            pool = [s for s, h in zip(pool, held) if not h]
        else:
            test = []
        self.target_labeled = all(s.label != UNLABELED for s in pool)
        self.target_samples = _restrict(pool, target_ids) if self.target_labeled else pool
        self.test_samples = _restrict(test, test_ids)
        if not self.target_samples:
            where = train_list or target_shards or self.image_dir
            raise InputError(f"empty target set: no image of target classes {split.target_classes!r} in {where}")
        if test_list and not self.test_samples:
            raise InputError(f"empty test set: no image of test classes {split.test_classes!r} in {test_list}")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise InputError(f"data.{name} must be a positive number of images, got {value}")
        if num_workers < 0:
            raise InputError(f"data.num_workers must be 0 or more, got {num_workers}")
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed = seed
        self.crop_scale = crop_scale
        self.preprocess: ImagePreprocess | None = None
        self.skipped = SkippedImages(max_skipped)
        predict_images, self.predict_samples = self._predict_source(predict_list, pool_images, num_classes)
        self._images: dict[str, ImageSource] = {"target": pool_images, "test": test_images, "predict": predict_images}
        if verify_images:
            self._verify_images()

    @property
    def known_class_names(self) -> list[str]:
        """Names of the K known classes: what the model is told."""
        return self.class_names[: self.split.num_known]

    @property
    def eval_splits(self) -> list[str]:
        """Names of the evaluation splits, in dataloader order."""
        return [name for name, samples in self._eval_samples().items() if samples]

    def target_labels(self) -> Tensor:
        """Labels of the target set by sample index. Read by evaluation and by oracle objectives only."""
        if not self.target_labeled:
            raise InputError("the target data has no labels")
        return torch.tensor([s.label for s in self.target_samples])

    def target_keys(self) -> Tensor:
        """One int64 key per target sample (its path and label), by sample index: a checkpoint keeps them, and a
        resume on another list (an image replaced, the order changed, a label edited) is refused."""
        return torch.tensor(sample_keys(self.target_samples), dtype=torch.int64)

    def describe_target(self, index: int) -> str:
        sample = self.target_samples[index]
        return sample.path if sample.label == UNLABELED else f"{sample.path} (label {sample.label})"

    def _eval_samples(self) -> dict[str, list[Sample]]:
        return {"test": self.test_samples, "target": self.target_samples if self.target_labeled else []}

    def _split_samples(self) -> dict[str, list[Sample]]:
        """Every split's samples by name; sample indices are positions in these lists."""
        return {"target": self.target_samples, "test": self.test_samples, "predict": self.predict_samples}

    def _files_dir(self, option: str) -> Path:
        """The image directory ``root/domain``, which ``option`` needs (its paths are relative to it)."""
        if self.image_dir is None:
            if self._root is None:
                raise InputError(f"{option} names image files, which need data.root (the folder they are relative to)")
            self.image_dir = resolve_domain(self._root, self._domain)
        return self.image_dir

    def _target_source(
        self, train_list: str | None, target_shards: str | None, shard_cache: str | None, num_classes: int
    ) -> tuple[ImageSource, list[Sample]]:
        """Where the target pool's images are read from, and the pool (every image, in sample-index order)."""
        if target_shards:
            if train_list:
                raise InputError("data.train_list and data.target_shards both name the target images: set one")
            shards = ImageShards(target_shards, shard_cache)
            labeled = any(s.label != UNLABELED for s in shards.samples)
            stored = shards.class_names
            if stored is not None and stored != self.class_names:
                # Labels are class ids: under other names (or another order) every label would silently mean
                # another class.
                i = next(i for i, (a, b) in enumerate(zip([*stored, None], [*self.class_names, None])) if a != b)
                shard_name, configured = (repr(n[i]) if i < len(n) else "none" for n in (stored, self.class_names))
                raise InputError(
                    f"data.target_shards: the shards at {target_shards} were written for other class names than "
                    f"data.class_names: class {i}: shards {shard_name}, configured {configured} ({len(stored)} and "
                    f"{len(self.class_names)} names); configure the shards' class names, or write the shards again "
                    "with `uft data shard --class-names`"
                )
            if not shards.has_metadata:
                rank_zero_warn(
                    f"uft: the shards at {target_shards} hold no uft_shards.json (written by an older `uft data "
                    "shard`): their class names and sample list cannot be checked"
                    + ("; their labels are taken to follow data.class_names" if labeled else "")
                )
            elif stored is None and labeled:
                rank_zero_warn(
                    f"uft: the shards at {target_shards} were written without --class-names: their labels are taken "
                    "to follow data.class_names, unchecked"
                )
            for lineno, sample in enumerate(shards.samples, start=2):
                if sample.label >= num_classes:
                    raise InputError(
                        f"{target_shards}/{SAMPLES_FILE}:{lineno}: label {sample.label} is outside the "
                        f"{num_classes} class names"
                    )
            return shards, shards.samples
        images = ImageFiles(self._files_dir("the target set"))
        if train_list:
            return images, read_list_file(train_list, images.folder, num_classes)
        return images, scan_image_folder(images.folder, self.class_names)

    def _predict_source(
        self, predict_list: str | None, target_images: ImageSource, num_classes: int
    ) -> tuple[ImageSource, list[Sample]]:
        if predict_list is None:
            return target_images, self.target_samples
        folder = Path(predict_list)
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise InputError(f"data.predict_list: no images under {folder}")
            return ImageFiles(folder), [Sample(str(p.relative_to(folder))) for p in files]
        images = ImageFiles(self._files_dir("data.predict_list"))
        listed = read_list_file(predict_list, images.folder, num_classes)
        return images, [Sample(s.path) for s in listed]  # labels are not read

    def predict_paths(self) -> list[str]:
        """Paths of the images ``uft predict`` reads, by sample index, as the user gave them (relative to the
        image directory or to the predict folder)."""
        return [s.path for s in self.predict_samples]

    def _verify_images(self) -> None:
        for split, samples in self._split_samples().items():
            if split == "predict":
                continue
            self._record_skipped(split, self._images[split].unreadable(s.path for s in samples))

    def report_skipped(self, split: str, indices: list[int]) -> None:
        """Samples of ``split`` that could not be read (the same call on every process): each is named once,
        listed in ``skipped_images.txt``; more than ``max_skipped`` of the split stops the run."""
        samples, images = self._split_samples()[split], self._images[split]
        bad = {}
        for i in indices:
            path = samples[i].path
            bad[i] = (path, images.reason(path) or "could not be read at the time")
        self._record_skipped(split, bad)

    def _record_skipped(self, split: str, bad: dict[int, tuple[str, str]]) -> None:
        try:
            new = self.skipped.add(split, bad, len(self._split_samples()[split]))
        finally:
            if self.trainer is not None:
                self._write_skipped()
        for path, reason in new:
            where = self._images[split].describe(path)
            rank_zero_warn(f"uft: skipping unreadable image {where} ({split} split): {reason}")

    def skipped_indices(self, split: str) -> list[int]:
        """Indices of the samples of ``split`` found unreadable so far (also by an earlier part of the run)."""
        return self.skipped.indices(split)

    def _skipped_file(self) -> Path:
        trainer = self.trainer
        return Path(trainer.log_dir or trainer.default_root_dir) / SKIPPED_FILE  # log_dir: a broadcast

    def _write_skipped(self) -> None:
        if len(self.skipped):
            _write_lines(self._skipped_file(), self.skipped.lines())

    def teardown(self, stage: str) -> None:
        if len(self.skipped) and self.trainer is not None:
            totals = {split: len(samples) for split, samples in self._split_samples().items()}
            rank_zero_info(f"uft: {self.skipped.summary(totals)}; listed in {self._skipped_file()}")

    def state_dict(self) -> dict:
        return {"skipped": self.skipped.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        paths = {split: [s.path for s in samples] for split, samples in self._split_samples().items()}
        self.skipped.load_state_dict(state.get("skipped", {}), paths)

    def setup(self, stage: str | None = None) -> None:
        if self.preprocess is None:
            self.preprocess = self.trainer.lightning_module.preprocess
        if self.seed is None:
            self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        if self.trainer is not None:
            # Processes started by torchrun or srun seed themselves; a random `seed_everything: true` would give
            # each its own order. Rank 0's seed is the run's.
            self.seed = self.trainer.strategy.broadcast(self.seed, src=0)
        if len(self.skipped):  # found by verify_images, before there was a log folder
            self._write_skipped()
        if stage == "fit":
            per_process_batch(self.batch_size, self._world()[1])
            if len(self.target_samples) < self.batch_size:
                raise InputError(
                    f"the target set has {len(self.target_samples)} images, fewer than one global batch "
                    f"(data.batch_size={self.batch_size}): lower data.batch_size"
                )

    def _world(self) -> tuple[int, int]:
        """``(global rank, number of processes)`` of the attached trainer; ``(0, 1)`` without one."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader_options(self) -> dict:
        return {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0, "collate_fn": collate}

    def _eval_loader(self, dataset) -> DataLoader:
        rank, world_size = self._world()
        sampler = BatchShardSampler(len(dataset), self.eval_batch_size, rank, world_size)
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=sampler, **self._loader_options())

    def train_dataloader(self) -> DataLoader:
        images = self._images["target"]
        dataset = ImageListDataset(
            self.target_samples, images, train_transform(self.preprocess, self.crop_scale), seed=self.seed
        )
        rank, world_size = self._world()
        groups = images.order_groups([s.path for s in self.target_samples])
        sampler = GlobalBatchSampler(len(dataset), self.batch_size, self.seed, rank, world_size, groups=groups)
        return ResumableLoader(dataset, sampler, **self._loader_options())

    def _eval_loaders(self) -> list[DataLoader]:
        transform = eval_transform(self.preprocess)
        sizes = {name: len(samples) for name, samples in self._eval_samples().items() if samples}
        world_size = self._world()[1]
        if sizes and max(sizes.values()) < world_size:
            raise InputError(
                f"the evaluation splits hold {sizes} images, fewer than the {world_size} processes: evaluate on at "
                f"most {max(sizes.values())} devices"
            )
        return [
            self._eval_loader(ImageListDataset(samples, self._images[split], transform, with_labels=True))
            for split, samples in self._eval_samples().items()
            if samples
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def confidence_dataloader(self) -> DataLoader:
        """This process's share of the target set, evaluation transform, no labels: the confidence pass."""
        dataset = ImageListDataset(self.target_samples, self._images["target"], eval_transform(self.preprocess))
        return self._eval_loader(dataset)

    @property
    def num_target_samples(self) -> int:
        """Size of the whole target set: the length of per-sample tables."""
        return len(self.target_samples)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(
            ImageListDataset(self.predict_samples, self._images["predict"], eval_transform(self.preprocess))
        )


@rank_zero_only
def _write_lines(path: Path, lines: list[str]) -> None:
    write_text(path, "".join(line + "\n" for line in lines))


def _restrict(samples: list[Sample], class_ids: list[int]) -> list[Sample]:
    keep = set(class_ids)
    return [s for s in samples if s.label in keep]
