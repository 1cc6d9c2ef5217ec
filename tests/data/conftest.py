"""Fixtures of the data tests: generated shapes in a tmp folder, a datamodule over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from uft.data.datamodule import TargetDataModule
from uft.data.splits import ClassSplit
from uft.data.synthetic import make_shapes

from .builders import PRE, make_dm


@pytest.fixture
def shapes(tmp_path) -> Path:
    """Generated shapes: 8 classes, 3 target and 2 test images per class, 16x16."""
    return make_shapes(tmp_path / "shapes", {"target": 3, "test": 2}, size=16)


@pytest.fixture
def dm(shapes) -> TargetDataModule:
    """A datamodule with preprocessing and seed set by hand, as setup would from the trainer."""
    module = make_dm(shapes, ClassSplit(5, "0-6", "0-7"))
    module.preprocess = PRE
    module.seed = 0
    return module
