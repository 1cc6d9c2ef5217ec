"""The LightningDataModule that streams unlabeled target images and the labeled evaluation splits."""

from __future__ import annotations

import os
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader

from uft.clip import ImagePreprocess
from uft.data.batch import collate
from uft.data.contract import ImagePreprocessing, OnlineLearner
from uft.data.datasets import ImageListDataset
from uft.data.lists import UNLABELED, Sample, read_class_names, sample_keys, segments_of_samples
from uft.data.recipes import DataLayout, DataRecipe
from uft.data.samplers import BatchShardSampler, GlobalBatchSampler, ResumableLoader, StreamSampler, per_process_batch
from uft.data.skipped import SkippedImages
from uft.data.splits import ClassSplit
from uft.data.target_pool import TargetPool, resolve_target_pool
from uft.data.transforms import eval_transform, train_transform
from uft.errors import InputError
from uft.online import OnlineAdaptation


def _pool_field(name: str, doc: str) -> property:
    """A read-only attribute of the data module that is the resolved pool's ``name`` (after ``setup``)."""
    return property(lambda self: getattr(self.pool, name), doc=f"{doc} Read by ``setup``.")


class TargetDataModule(LightningDataModule):
    """Unlabeled target images of one domain, plus labeled evaluation splits.

    Target images come from a list file (``relative/path.jpg <label>`` per line, labels optional), from an
    ImageFolder tree ``root/domain/<class name>/*``, or from shards written by ``uft data shard`` from either
    (``target_shards``: a local folder or an object-store URL; the sample list and every per-sample index are the
    same as from the files, and training reads the shards one after another). Without a ``test_list``, the labeled
    ``test`` split follows ``protocol``: ``holdout`` holds out a deterministic ``holdout_fraction`` of the images
    (the rest, restricted to ``split.target_classes``, is the unlabeled ``target`` set); ``paper`` (the UEO
    reference's) tests on the domain's whole image list, every class, and trains on its images of the target
    classes. Every loader yields :class:`~uft.data.batch.Batch` es (images, sample index, readable column):

    - ``train``: over the target set with the training transform, without labels;
    - ``val``/``test``: the evaluation splits ``test`` and ``target``, with labels; ``target`` labels are read by
      evaluation only, and the split is absent when the target list has no labels;
    - ``predict``: over ``predict_list`` (default: the target set), evaluation transform, without labels;
    - the confidence pass: over the target set with the evaluation transform, without labels.

    Transforms follow the model's preprocessing config, read from the LightningModule at ``setup``.

    Phases (Lightning's): the constructor stores the arguments, checks what needs no file and reads the class names
    (the CLI gives the known ones to the model); ``prepare_data`` makes a recipe's data set; ``setup`` reads the
    lists, folders or shards (:func:`~uft.data.target_pool.resolve_target_pool`, once) and the samples are known.

    An image that cannot be read during the run (missing, zero-byte, truncated, corrupt) is skipped: named in a
    warning once, never trained on nor evaluated, kept in the record ``skipped_images``
    (:class:`~uft.data.skipped.SkippedImages`; :class:`~uft.callbacks.SkippedImagesFile` lists it in
    ``skipped_images.txt`` in the run's log folder and counts it in the final summary). More than ``max_skipped`` of
    a split stops the run with one error.

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
            ``uft.world.WorldBenchmark``), in ``prepare_data``; its class names (known without rendering) and its
            target and test lists are the defaults of ``class_names``, ``train_list`` and ``test_list``.
        max_skipped: share of a split's images that may be unreadable (skipped with a warning); beyond it the
            run stops.
        verify_images: decode every target and test image when the data is set up (``setup``, before the model's
            setup and the first batch), and report the unreadable ones then (same rule as ``max_skipped``).
        predict_list: images for ``uft predict``: a list file (paths relative to the image directory, labels
            ignored) or a folder (every image under it); default: the target set.
        target_shards: shards of the target images (``uft data shard``), instead of ``train_list`` or the
            folder: a local folder or a URL such as ``s3://bucket/prefix`` (credentials from the environment, as the
            storage's client reads them). The held-out or ``paper`` test split is read from them too.
        shard_cache: where chunks of remote shards are kept (default: litdata's cache folder).
        shuffle: draw a new order of the target set every epoch (training); ``false`` keeps the list's order. An
            online run (the model's ``online``, :mod:`uft.online`) needs ``false``: it reads the target list once,
            in its order, as a stream (:class:`~uft.data.samplers.StreamSampler`), the last batch included.
        strict_preflight: stop the run with an error, instead of a warning, when the preflight finds the model's
            predictions suspect (:mod:`uft.preflight`): before training, the zero-shot accuracy on the target set
            below twice the chance rate (with labels) or one class taking over half of its predictions (without);
            in ``validate``/``test``, the evaluated model's accuracy on a split below twice the chance rate. The
            usual cause is a class-name file in another order than the list labels.
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
        shuffle: bool = True,
        strict_preflight: bool = False,
    ) -> None:
        super().__init__()
        self.class_names = _class_names(class_names, split, recipe)
        _check_arguments(holdout_fraction, batch_size, eval_batch_size, num_workers, train_list, target_shards)
        if recipe is not None:  # a mistyped root is refused before the model is built
            recipe.target_root(root)
        self.split, self.recipe, self.verify_images = split, recipe, verify_images
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed, self.crop_scale, self.shuffle = seed, crop_scale, shuffle
        self.strict_preflight = strict_preflight
        self.online: OnlineAdaptation | None = None  # the model's online protocol, read at setup
        self.preprocess: ImagePreprocess | None = None  # the model's, read at setup
        self.skipped_images = SkippedImages(max_skipped)  # the run's unreadable images
        self.skipped_images.warn = rank_zero_warn
        self._sources = dict(root=root, domain=domain, train_list=train_list, test_list=test_list)
        self._sources.update(protocol=protocol, holdout_fraction=holdout_fraction, holdout_seed=holdout_seed)
        self._sources.update(predict_list=predict_list, target_shards=target_shards, shard_cache=shard_cache)
        self._pool: TargetPool | None = None

    @property
    def known_class_names(self) -> list[str]:
        """Names of the K known classes: what the model is told."""
        return self.class_names[: self.split.num_known]

    @property
    def pool(self) -> TargetPool:
        """The samples of every split and where their images are, resolved by ``setup``."""
        if self._pool is None:
            # An AttributeError: a Protocol isinstance check (hasattr) before setup answers "no" instead of raising.
            raise AttributeError("the data is read by setup(stage): call prepare_data() and setup() first")
        return self._pool

    target_samples = _pool_field("target_samples", "The target set; sample indices are positions in it.")
    test_samples = _pool_field("test_samples", "The labeled test split.")
    predict_samples = _pool_field("predict_samples", "What ``uft predict`` reads.")
    target_labeled = _pool_field("target_labeled", "Whether every target image has a label.")
    image_dir = _pool_field("image_dir", "``root/domain``; ``None`` when only shards were read.")

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

    def target_segments(self) -> list[tuple[str, range]]:
        """The segments of the target stream (``# segment NAME`` lines of the target list: the domains of a continual
        stream) as ranges of target sample indices (:func:`~uft.data.lists.segments_of_samples`); empty for a list
        without segments, a folder or shards."""
        list_file = _recipe_defaults(self._sources, self.recipe)["train_list"]
        if not list_file or self.image_dir is None:
            return []
        return segments_of_samples(list_file, self.image_dir, len(self.class_names), self.target_samples)

    def target_paths(self) -> list[str]:
        """Paths of the target images by sample index, as the list gave them (an online run's predictions)."""
        return [s.path for s in self.target_samples]

    def predict_paths(self) -> list[str]:
        """Paths of the images ``uft predict`` reads, by sample index, as the user gave them (relative to the
        image directory or to the predict folder)."""
        return [s.path for s in self.predict_samples]

    def report_skipped(self, split: str, indices: list[int]) -> None:
        """Samples of ``split`` that could not be read (the same call on every process): each is named once,
        listed in ``skipped_images.txt``; more than ``max_skipped`` of the split stops the run."""
        self.skipped_images.report(split, indices)

    def skipped_indices(self, split: str) -> list[int]:
        """Indices of the samples of ``split`` found unreadable so far (also by an earlier part of the run)."""
        return self.skipped_images.indices(split)

    def state_dict(self) -> dict:
        return {"skipped": self.skipped_images.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.skipped_images.load_state_dict(state.get("skipped", {}), self.skipped_images.paths)

    def prepare_data(self) -> None:
        # Writes only (once per node): a recipe's data set. `ensure` is safe when several nodes share the folder.
        if self.recipe is not None:
            self.recipe.ensure(self._sources["root"])

    def read(self) -> TargetPool:
        """Read the lists, folders or shards (after ``prepare_data``), once: ``setup`` calls it, and so does the CLI
        before a run writes anything, so that a bad list is one line and leaves no run folder behind."""
        if self._pool is None:  # a later stage (test after fit) reuses it
            arguments = _recipe_defaults(self._sources, self.recipe)
            self._pool = resolve_target_pool(self.class_names, self.split, **arguments)
            paths = {split: [s.path for s in samples] for split, samples in self._pool.splits().items()}
            self.skipped_images.attach(paths, self._pool.images)
            if self.verify_images:
                self.skipped_images.verify(["target", "test"])
        return self._pool

    def check_evaluable(self) -> None:
        """``validate``/``test`` need an evaluation split: without one they would end without metrics."""
        if not self.eval_splits:
            raise InputError("nothing to evaluate: the target data has no labels and there is no data.test_list")

    def check_trainable(self) -> None:
        """``fit`` needs one global batch of target images: training uses only full global batches."""
        if len(self.target_samples) < self.batch_size:
            raise InputError(
                f"the target set has {len(self.target_samples)} images, fewer than one global batch "
                f"(data.batch_size={self.batch_size}): lower data.batch_size"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.preprocess is None and self.trainer is not None:  # without a trainer it is set by hand (benches)
            self.preprocess = _model_preprocess(self.trainer.lightning_module)
            module = self.trainer.lightning_module
            self.online = module.online if isinstance(module, OnlineLearner) else None
        self.read()
        if self.seed is None:
            self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        if self.trainer is not None:
            # Processes started by torchrun or srun seed themselves; a random `seed_everything: true` would give
            # each its own order. Rank 0's seed is the run's.
            self.seed = self.trainer.strategy.broadcast(self.seed, src=0)
        if stage in ("validate", "test"):
            self.check_evaluable()
        if stage == "fit":
            per_process_batch(self.batch_size, self._world()[1])
            self.check_trainable()

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
        images, online = self.pool.images["target"], self.online
        augment = online is None or online.augment
        transform = train_transform(self.preprocess, self.crop_scale) if augment else eval_transform(self.preprocess)
        dataset = ImageListDataset(self.target_samples, images, transform, seed=self.seed)
        rank, world_size = self._world()
        if online is not None:
            sampler = StreamSampler(len(dataset), self.batch_size, rank, world_size, online.steps_per_batch)
        else:
            groups = images.order_groups([s.path for s in self.target_samples])
            sampler = GlobalBatchSampler(
                len(dataset), self.batch_size, self.seed, rank, world_size, self.shuffle, groups=groups
            )
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
            self._eval_loader(ImageListDataset(samples, self.pool.images[split], transform, with_labels=True))
            for split, samples in self._eval_samples().items()
            if samples
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders()

    def confidence_dataloader(self, every: int = 1) -> DataLoader:
        """This process's share of the target set, evaluation transform, no labels: the confidence pass. With
        ``every`` above 1, every ``every``-th sample only, indexed by position in that subset (the preflight's)."""
        samples = self.target_samples[::every]
        dataset = ImageListDataset(samples, self.pool.images["target"], eval_transform(self.preprocess))
        return self._eval_loader(dataset)

    @property
    def num_target_samples(self) -> int:
        """Size of the whole target set: the length of per-sample tables."""
        return len(self.target_samples)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(
            ImageListDataset(self.predict_samples, self.pool.images["predict"], eval_transform(self.preprocess))
        )


def _class_names(given: list[str] | str | None, split: ClassSplit | None, recipe: DataRecipe | None) -> list[str]:
    """The class names (a list, a file, or the recipe's: known without rendering), checked against the split."""
    if given is None and recipe is not None:
        given = recipe.class_names()
    if given is None:
        raise InputError("data.class_names is not set: give the class names (a list, or a file with one per line)")
    if split is None:
        raise InputError(
            "data.split is not set: add a setting, e.g. -c configs/setting/officehome/open_partial.yaml, or give "
            "--data.split.num_known"
        )
    names, source = read_class_names(given)
    split.resolve(len(names), source)
    return names


def _model_preprocess(module: object) -> ImagePreprocess:
    """The model's image preprocessing, which the transforms follow (:class:`~uft.data.contract.ImagePreprocessing`)."""
    if not isinstance(module, ImagePreprocessing):
        raise InputError(
            "the data module needs the model's image preprocessing (a `preprocess` attribute, "
            f"uft.data.contract.ImagePreprocessing), which {type(module).__name__} does not have"
        )
    return module.preprocess


def _recipe_defaults(sources: dict, recipe: DataRecipe | None) -> dict:
    """The arguments of :func:`resolve_target_pool`; with a recipe, its files (made by ``prepare_data``) are the
    defaults of the root and the lists."""
    args = dict(sources)
    root = args["root"] or (recipe.default_root() if recipe is not None else None)
    if root is not None and recipe is not None:
        layout = DataLayout.of(root)
        args["root"] = str(layout.root)
        if args["train_list"] is None and not args["target_shards"]:
            args["train_list"] = str(layout.target_list)
        if args["test_list"] is None and layout.test_list is not None:
            args["test_list"] = str(layout.test_list)
    return args


def _check_arguments(
    holdout_fraction: float,
    batch_size: int,
    eval_batch_size: int,
    num_workers: int,
    train_list: str | None,
    target_shards: str | None,
) -> None:
    if not 0.0 <= holdout_fraction < 1.0:
        raise InputError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if value < 1:
            raise InputError(f"data.{name} must be a positive number of images, got {value}")
    if num_workers < 0:
        raise InputError(f"data.num_workers must be 0 or more, got {num_workers}")
    if train_list and target_shards:
        raise InputError("data.train_list and data.target_shards both name the target images: set one")
