"""Data the data tests build: the tests' image preprocessing, a datamodule over a generated folder (set up, as a
trainer sets it up), a tiny tree in a benchmark's published layout."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from uft.clip import ImagePreprocess
from uft.data.check import BENCHMARKS
from uft.data.datamodule import TargetDataModule
from uft.data.recipes import DataLayout
from uft.data.splits import ClassSplit

from ..args import ROOT

PRE = ImagePreprocess(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def set_up_module(*args, stage: str | None = None, **kwargs) -> TargetDataModule:
    """``TargetDataModule(*args, **kwargs)`` after the data phases a trainer runs before its loaders: ``prepare_data``
    (a recipe renders) then ``setup(stage)`` (the lists, folders or shards are read)."""
    dm = TargetDataModule(*args, **kwargs)
    dm.prepare_data()
    dm.setup(stage)
    return dm


def make_dm(data: Path, split: ClassSplit, **kwargs) -> TargetDataModule:
    """A datamodule over ``data`` (list files by default), no worker processes, set up."""
    layout = DataLayout.of(data)
    args = {
        "root": str(data),
        "class_names": str(layout.class_names),
        "split": split,
        "train_list": str(layout.target_list),
        "test_list": str(layout.test_list),
        "num_workers": 0,
        "batch_size": 4,
        "eval_batch_size": 5,
    }
    args.update(kwargs)
    return set_up_module(**args)


def fake_tree(root: Path, dataset: str, per_class: int = 1, skip_domain: str | None = None) -> Path:
    """A tiny tree in the dataset's published layout: ``root/<domain>[/images]/<class>/<n>.jpg``."""
    benchmark = BENCHMARKS[dataset]
    names = (ROOT / "data" / dataset / "classes.txt").read_text().split()
    for domain in benchmark.domains:
        if domain == skip_domain:
            continue
        folder = root / domain / benchmark.inner if benchmark.inner else root / domain
        for label, name in enumerate(names):
            (folder / name).mkdir(parents=True)
            for n in range(per_class):
                Image.new("RGB", (4, 4), (label % 256, n, 0)).save(folder / name / f"{n:04d}.jpg")
    return root
