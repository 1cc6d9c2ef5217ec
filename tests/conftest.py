"""Shared fixtures: CPU only, the tiny CLIP registered by uft, generated images in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on the CPU, even where a GPU exists

import uft.clip  # noqa: E402,F401  (registers the tiny architectures with open_clip)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A small generated data set: 8 shape classes, target.txt / test.txt list files, classes.txt."""
    from uft.data.synthetic import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), {"target": 6, "test": 4}, size=32, seed=1)
