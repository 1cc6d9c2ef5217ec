"""Shared fixtures: CPU only, the tiny CLIP registered by uft, generated images in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests run on the CPU, even where a GPU exists

import uft.clip  # noqa: E402,F401  (registers the tiny architectures with open_clip)

ROOT = Path(__file__).resolve().parents[1]
TINY = "uft-tiny-vit"


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A small generated data set: 8 shape classes, target.txt / test.txt list files, classes.txt."""
    from uft.data.synthetic import make_shapes

    return make_shapes(tmp_path_factory.mktemp("shapes"), {"target": 6, "test": 4}, size=32, seed=1)


def data_args(data: Path) -> list[str]:
    """CLI arguments pointing the data module at a folder a recipe made (its layout: class names, target and test
    lists)."""
    from uft.data.recipes import DataLayout

    layout = DataLayout.of(data)
    paths = [f"--data.root={data}", f"--data.class_names={layout.class_names}"]
    paths.append(f"--data.train_list={layout.target_list}")
    return [*paths, *([f"--data.test_list={layout.test_list}"] if layout.test_list else [])]


def demo_args(data: Path, root_dir: Path, *extra: str) -> list[str]:
    """CLI arguments for a short run of the tiny test config on ``data``, logging into ``root_dir``."""
    return ["-c", str(ROOT / "tests" / "tiny.yaml"), *data_args(data), f"--trainer.default_root_dir={root_dir}", *extra]
