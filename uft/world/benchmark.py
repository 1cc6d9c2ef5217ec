"""The demo's target benchmark: a shifted rendering of the procedural world, with known and unknown categories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uft.data.recipes import DataRecipe, write_labeled_images
from uft.world.render import render
from uft.world.shapes import CATEGORIES
from uft.world.shifts import apply_shift


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
        def images(split_index: int, label: int):
            rng = np.random.default_rng([self.seed, split_index, label])
            while True:
                image, _ = render(label, self.style, rng, self.size)
                yield image if self.shift == "none" else apply_shift(image, self.shift, self.severity, rng)

        counts = {"target": self.target_per_class, "test": self.test_per_class}
        write_labeled_images(root, list(CATEGORIES), counts, images)
