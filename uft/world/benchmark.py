"""The demo's target benchmark: a shifted rendering of the procedural world, with known and unknown categories; and
a continual stream of it, the world under one shift after another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from uft.data.lists import segment_line
from uft.data.recipes import DataRecipe, save_images, write_labeled_images
from uft.errors import InputError
from uft.world.render import render
from uft.world.shapes import CATEGORIES
from uft.world.shifts import SHIFTS, apply_shift
from uft.world.styles import STYLES


def _rendered(
    label: int, style: str, shift: str, severity: float, size: int, rng: np.random.Generator
) -> Iterator[Image.Image]:
    """Endless images of category ``label`` in ``style``, corrupted by ``shift`` (``none``: clean), drawn from
    ``rng``."""
    while True:
        image, _ = render(label, style, rng, size)
        yield image if shift == "none" else apply_shift(image, shift, severity, rng)


class WorldBenchmark(DataRecipe):
    """Renders the target domain: every category in one ``style``, corrupted by ``shift`` at ``severity``.

    Writes ``classes.txt`` (category names in the world's order: the first K are the known classes of a split),
    ``target.txt`` (the unlabeled target pool; its labels are read by evaluation only) and ``test.txt`` (a
    separately drawn labeled test set), images under ``images/<category>/``. Deterministic from ``seed``.

    Args:
        seed: seed of the rendering.
        style: world style of the target domain (``photo``, ``clipart``, ``painting``, ``sketch``).
        shift: low-level corruption of the target domain (``fog``, ``contrast``, ``noise``, ``blur``), or ``none``.
        severity: corruption strength in [0, 1].
        target_per_class: unlabeled target images per category.
        test_per_class: labeled test images per category.
        size: image side in pixels.
    """

    def __init__(
        self,
        seed: int = 0,
        style: str = "photo",
        shift: str = "fog",
        severity: float = 0.7,
        target_per_class: int = 64,
        test_per_class: int = 32,
        size: int = 48,
    ) -> None:
        self.seed, self.style, self.shift, self.severity = seed, style, shift, severity
        self.target_per_class, self.test_per_class, self.size = target_per_class, test_per_class, size

    def params(self) -> dict:
        return dict(vars(self))

    def describe(self) -> str:
        count = len(CATEGORIES) * (self.target_per_class + self.test_per_class)
        return f"the world benchmark ({count} images of {self.size}x{self.size} pixels, {self.style}, {self.shift})"

    def class_names(self) -> list[str]:
        return list(CATEGORIES)

    def default_root(self) -> Path:
        """``data/world/<style>-<shift>`` (``-seed<N>`` for a seed other than 0; other sizes and counts add their
        values), relative to the working folder."""
        name = f"{self.style}-{self.shift}" + (f"-seed{self.seed}" if self.seed else "")
        defaults = {"severity": 0.7, "target_per_class": 64, "test_per_class": 32, "size": 48}
        name += "".join(f"-{key}{getattr(self, key)}" for key, value in defaults.items() if getattr(self, key) != value)
        return Path("data") / "world" / name

    def make(self, root: Path) -> None:
        def images(split_index: int, label: int) -> Iterator[Image.Image]:
            rng = np.random.default_rng([self.seed, split_index, label])
            return _rendered(label, self.style, self.shift, self.severity, self.size, rng)

        counts = {"target": self.target_per_class, "test": self.test_per_class}
        write_labeled_images(root, list(CATEGORIES), counts, images)


# In the label's place of a generator's key [seed, segment, split, label]: the key of a segment's order, which no
# category's images share. (Not a shorter key: numpy pads a key with zeros, so [s, g, p] would be label 0's.)
_ORDER = 2**32 - 1


class WorldStream(DataRecipe):
    """Renders a continual target stream: every category in one ``style``, under one shift after another.

    Each shift of ``shifts`` is a segment of the stream (a domain of its own, freshly drawn images). ``target.txt``
    holds, segment by segment in ``shifts`` order, a ``# segment <shift>`` line and then that segment's images, the
    categories in a shuffled order (a stream sorted by class would hold one class at a time); ``test.txt`` has the
    same shape with a separately drawn labeled test set. ``classes.txt`` names the categories in the world's order
    (the first K are the known classes of a split); images lie under ``images/<shift>/<category>/``. Read the
    segments with :func:`uft.data.lists.read_segments`. Deterministic from the parameters.

    Args:
        seed: seed of the rendering and of the order within each segment.
        style: world style of the stream (``photo``, ``clipart``, ``painting``, ``sketch``).
        shifts: the segments' corruptions, in stream order, each once (``fog``, ``contrast``, ``noise``, ``blur``).
        severity: corruption strength in [0, 1], the same in every segment.
        per_class: unlabeled target images per category in each segment.
        test_per_class: labeled test images per category in each segment (0: no test list).
        size: image side in pixels.
    """

    def __init__(
        self,
        seed: int = 0,
        style: str = "photo",
        shifts: Sequence[str] = ("fog", "contrast", "noise", "blur"),
        severity: float = 0.7,
        per_class: int = 16,
        test_per_class: int = 8,
        size: int = 48,
    ) -> None:
        if style not in STYLES:
            raise InputError(f"WorldStream: unknown style {style!r}; expected one of {', '.join(STYLES)}")
        shifts = [shifts] if isinstance(shifts, str) else list(shifts)  # a list: recipe.json reads back equal
        unknown = [s for s in shifts if s not in SHIFTS]
        if unknown or not shifts:
            found = f"unknown shift {unknown[0]!r}" if unknown else "no shifts"
            raise InputError(f"WorldStream: {found}; expected a list of {', '.join(SHIFTS)}")
        repeated = sorted({s for s in shifts if shifts.count(s) > 1})
        if repeated:
            raise InputError(f"WorldStream: shifts {shifts} repeat {', '.join(repeated)}; each segment is one shift")
        if per_class < 1 or test_per_class < 0:
            raise InputError(f"WorldStream: per_class {per_class} must be at least 1, test_per_class at least 0")
        self.seed, self.style, self.shifts, self.severity = seed, style, shifts, severity
        self.per_class, self.test_per_class, self.size = per_class, test_per_class, size

    def params(self) -> dict:
        return dict(vars(self))

    def describe(self) -> str:
        count = len(CATEGORIES) * len(self.shifts) * (self.per_class + self.test_per_class)
        stream = ", then ".join(self.shifts)
        return f"the world stream ({count} images of {self.size}x{self.size} pixels, {self.style}, {stream})"

    def class_names(self) -> list[str]:
        return list(CATEGORIES)

    def default_root(self) -> Path:
        """``data/world/stream-<style>-<shift>-<shift>-...`` (``-seed<N>`` for a seed other than 0; other
        severities, sizes and counts add their values), relative to the working folder."""
        name = "-".join(["stream", self.style, *self.shifts]) + (f"-seed{self.seed}" if self.seed else "")
        defaults = {"severity": 0.7, "per_class": 16, "test_per_class": 8, "size": 48}
        name += "".join(f"-{key}{getattr(self, key)}" for key, value in defaults.items() if getattr(self, key) != value)
        return Path("data") / "world" / name

    def make(self, root: Path) -> None:
        (root / "classes.txt").write_text("\n".join(CATEGORIES) + "\n")
        for split_index, (split, count) in enumerate({"target": self.per_class, "test": self.test_per_class}.items()):
            if not count:
                continue
            lines = []
            for segment, shift in enumerate(self.shifts):
                rows = []
                for label, name in enumerate(CATEGORIES):
                    rng = np.random.default_rng([self.seed, segment, split_index, label])
                    images = _rendered(label, self.style, shift, self.severity, self.size, rng)
                    saved = save_images(root, f"images/{shift}/{name}", split, images, count)
                    rows += [f"{rel} {label}" for rel in saved]
                order = np.random.default_rng([self.seed, segment, split_index, _ORDER]).permutation(len(rows))
                lines += [segment_line(shift), *(rows[i] for i in order)]
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
