"""Data recipes under a distributed launch: every rank renders a missing data set at once, one rename wins and the
others use its folder."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
from pathlib import Path

import pytest

from uft.data.recipes import DataRecipe
from uft.data.synthetic import GeneratedShapes
from uft.errors import InputError

TIMEOUT = 120  # seconds for a rendering process, a few images each: start-up and the barrier's wait included


def small_shapes() -> GeneratedShapes:
    return GeneratedShapes(seed=0, size=16, target_per_class=2, test_per_class=1)


def render_as_a_rank(root: str, logs: str, rank: int, barrier) -> None:
    """One rank of the race: renders ``small_shapes`` into ``root`` once the other rank renders too, and writes
    what it saw into ``logs``: ``<rank>.rendering`` before rendering, ``<rank>.err`` (its stderr) and
    ``<rank>.json`` (the layout it got)."""
    make = GeneratedShapes.make

    def make_with_the_other(self: GeneratedShapes, scratch: Path) -> None:
        (Path(logs) / f"{rank}.rendering").write_text(str(scratch))
        barrier.wait(timeout=TIMEOUT)  # both found no folder and render: neither renames before the other starts
        make(self, scratch)

    # The class's (the recipe's parameters are its instance's attributes), in this process only.
    GeneratedShapes.make = make_with_the_other
    with open(Path(logs) / f"{rank}.err", "w") as err, contextlib.redirect_stderr(err):
        layout = small_shapes().ensure(root)
    (Path(logs) / f"{rank}.json").write_text(json.dumps({k: str(v) for k, v in vars(layout).items()}))


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ranks_rendering_the_same_recipe_at_once_all_proceed_with_one_folder(tmp_path):
    root, logs = tmp_path / "data" / "shapes", tmp_path / "logs"
    root.parent.mkdir()
    logs.mkdir()
    context = multiprocessing.get_context("spawn")  # as torchrun's ranks: separate interpreters
    barrier = context.Barrier(2)
    ranks = [context.Process(target=render_as_a_rank, args=(str(root), str(logs), r, barrier)) for r in range(2)]
    for rank in ranks:
        rank.start()
    try:
        for rank in ranks:
            rank.join(timeout=TIMEOUT)
    finally:
        for rank in ranks:
            if rank.is_alive():
                rank.kill()
                rank.join(timeout=10)
    errors = [(logs / f"{r}.err").read_text() if (logs / f"{r}.err").exists() else "" for r in range(2)]
    assert [rank.exitcode for rank in ranks] == [0, 0], errors
    assert all((logs / f"{r}.rendering").is_file() for r in range(2))  # both rendered: the race took place
    layouts = [json.loads((logs / f"{r}.json").read_text()) for r in range(2)]
    assert layouts[0] == layouts[1] and layouts[0]["root"] == str(root)
    assert sum("rendered by another process meanwhile" in e for e in errors) == 1, errors  # one lost the rename
    assert [p.name for p in root.parent.iterdir()] == ["shapes"]  # the loser's scratch folder is gone
    alone = tmp_path / "alone"
    with contextlib.redirect_stderr(None):
        small_shapes().ensure(alone)
    assert files_of(root) == files_of(alone)  # what one process alone renders


class Foreign(DataRecipe):
    """A recipe whose rendering ends with another process's folder, of other data, at its root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def params(self) -> dict:
        return {"seed": 0}

    def make(self, root: Path) -> None:
        (root / "classes.txt").write_text("a\n")
        (self.root / "mine.txt").parent.mkdir()
        (self.root / "mine.txt").write_text("another program's data\n")


def test_a_folder_of_other_data_that_wins_the_rename_is_refused(tmp_path, capsys):
    root = tmp_path / "data"
    with pytest.raises(InputError, match="exists but was not made by this recipe"):
        Foreign(root).ensure(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the scratch folder is gone
    assert [p.name for p in root.iterdir()] == ["mine.txt"]  # and the other folder untouched
