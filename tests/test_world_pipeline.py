"""The demo's world pipeline: reproducible pretraining, the checkpoint's loading path, the benchmark recipe."""

from __future__ import annotations

import json

import pytest
import torch

from uft.clip import load_clip
from uft.data.datamodule import TargetDataModule
from uft.data.splits import ClassSplit
from uft.errors import InputError
from uft.pretrain import MODEL, pretrain
from uft.world import CATEGORIES
from uft.world.benchmark import WorldBenchmark


def test_pretraining_is_reproducible_and_loads_through_open_clip(tmp_path):
    """Two runs from one seed write identical checkpoints; the file loads as a local open_clip checkpoint."""
    kwargs = dict(steps=2, batch_size=8, lr=1e-3, seed=3, workers=0, eval_per_class=1)
    accuracy = pretrain(tmp_path / "a.pt", **kwargs)
    pretrain(tmp_path / "b.pt", **kwargs)
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["token_embedding.weight"].dtype == torch.float16
    zero_rows = (a["token_embedding.weight"] == 0).all(dim=1)
    assert zero_rows.sum() > 40_000 and not zero_rows.all()  # only tokens of captions and names were kept
    assert set(accuracy) == {"photo", "clipart", "painting", "sketch"}
    model, pre = load_clip(MODEL, str(tmp_path / "a.pt"))
    assert pre.size == 48
    torch.testing.assert_close(model.visual.conv1.weight, a["visual.conv1.weight"].float())


def test_benchmark_recipe_makes_data_once_and_refuses_foreign_folders(tmp_path):
    recipe = WorldBenchmark(seed=1, target_per_class=2, test_per_class=1, size=48)
    root = tmp_path / "world"
    recipe.ensure(root)
    assert (root / "classes.txt").read_text().split() == list(CATEGORIES)
    assert len((root / "target.txt").read_text().splitlines()) == 2 * len(CATEGORIES)
    assert json.loads((root / "recipe.json").read_text())["seed"] == 1
    first = (root / "images" / CATEGORIES[0] / "target_0000.png").read_bytes()
    recipe.ensure(root)  # already made: nothing changes
    assert (root / "images" / CATEGORIES[0] / "target_0000.png").read_bytes() == first
    with pytest.raises(InputError, match="not made by this recipe"):
        WorldBenchmark(seed=2, target_per_class=2, test_per_class=1).ensure(root)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="remove it or choose another"):
        recipe.ensure(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_datamodule_makes_the_benchmark_through_its_recipe(tmp_path):
    root = tmp_path / "world"
    dm = TargetDataModule(
        root=str(root),
        class_names=str(root / "classes.txt"),
        split=ClassSplit(12, "0-7,12-17", "0-23"),
        train_list=str(root / "target.txt"),
        test_list=str(root / "test.txt"),
        recipe=WorldBenchmark(seed=0, target_per_class=2, test_per_class=1),
    )
    assert len(dm.target_samples) == 2 * 14 and len(dm.test_samples) == 24
    assert dm.known_class_names == list(CATEGORIES[:12])
