"""The continual world stream (WorldStream): one segment per shift, each in a shuffled class order, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uft.data.datamodule import TargetDataModule
from uft.data.lists import read_list_file, read_segments, segment_of
from uft.data.splits import ClassSplit
from uft.errors import InputError
from uft.world import CATEGORIES
from uft.world.benchmark import WorldStream

TINY = dict(size=16, per_class=1, test_per_class=1, shifts=["noise", "fog"])


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream") / "world"
    WorldStream(**TINY).ensure(root)
    return root


def test_segments_follow_the_shifts_with_every_category_in_a_shuffled_order(stream):
    """target.txt reads as a plain list file; its segments are the shifts in the given order, per_class x 24 images
    each, every category in each, not sorted by class; test.txt has the same shape."""
    samples = read_list_file(stream / "target.txt", stream, len(CATEGORIES))
    segments = segment_of(read_segments(stream / "target.txt"), len(samples))
    assert [name for name, _ in segments] == ["noise", "fog"]
    assert [len(indices) for _, indices in segments] == [len(CATEGORIES)] * 2
    for name, indices in segments:
        part = [samples[i] for i in indices]
        labels = [s.label for s in part]
        assert all(s.path.startswith(f"images/{name}/{CATEGORIES[s.label]}/target_") for s in part)
        assert sorted(labels) == list(range(len(CATEGORIES)))
        assert labels != sorted(labels)
    assert (stream / "classes.txt").read_text().split() == list(CATEGORIES)
    test = read_list_file(stream / "test.txt", stream, len(CATEGORIES))
    test_segments = segment_of(read_segments(stream / "test.txt"), len(test))
    assert [(name, len(indices)) for name, indices in test_segments] == [("noise", 24), ("fog", 24)]
    assert all(s.path.split("/")[3].startswith("test_") for s in test)
    assert (stream / "target.txt").read_text().splitlines()[0] == "# segment noise"
    assert json.loads((stream / "recipe.json").read_text())["shifts"] == ["noise", "fog"]


def test_same_parameters_render_the_same_bytes_and_another_seed_another_order(stream, tmp_path):
    WorldStream(**TINY).ensure(tmp_path / "again")
    assert files_of(tmp_path / "again") == files_of(stream)
    WorldStream(seed=1, **TINY).ensure(tmp_path / "seed1")
    first = (stream / "target.txt").read_text().splitlines()
    other = (tmp_path / "seed1" / "target.txt").read_text().splitlines()
    assert sorted(first) == sorted(other) and first != other  # the same files, in another order
    assert (tmp_path / "seed1" / "images/fog/house/target_0000.png").read_bytes() != (
        stream / "images/fog/house/target_0000.png"
    ).read_bytes()


def test_the_data_module_reads_the_stream(stream):
    """The stream is a recipe like the world benchmark: the data module reads its layout (segment lines skipped)."""
    split = ClassSplit(12, "0-7,12-17", "0-23")
    dm = TargetDataModule(root=str(stream), split=split, recipe=WorldStream(**TINY))
    dm.prepare_data()
    dm.setup("validate")
    assert len(dm.target_samples) == 2 * 14 and len(dm.test_samples) == 2 * 24


def test_default_root_names_the_parameters():
    assert WorldStream().default_root() == Path("data/world/stream-photo-fog-contrast-noise-blur")
    named = WorldStream(seed=2, style="sketch", shifts=("blur", "fog"), per_class=4, size=32).default_root()
    assert named == Path("data/world/stream-sketch-blur-fog-seed2-per_class4-size32")
    assert WorldStream().describe().startswith("the world stream (2304 images of 48x48 pixels, photo, fog, then")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(shifts=["fog", "rain"]), "WorldStream: unknown shift 'rain'; expected a list of fog, contrast, noise"),
        (dict(shifts=[]), "WorldStream: no shifts; expected a list of"),
        (dict(shifts=["fog", "blur", "fog"]), "repeat fog"),
        (dict(style="cartoon"), "WorldStream: unknown style 'cartoon'"),
        (dict(per_class=0), "per_class 0 must be at least 1"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(kwargs, message):
    with pytest.raises(InputError) as err:
        WorldStream(**kwargs)
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1
