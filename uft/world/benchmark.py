"""The demo's target benchmark: a shifted rendering of the procedural world, with known and unknown categories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uft.data.recipes import DataRecipe
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

    def make(self, root: Path) -> None:
        (root / "classes.txt").write_text("\n".join(CATEGORIES) + "\n")
        for split_id, (split, count) in enumerate((("target", self.target_per_class), ("test", self.test_per_class))):
            lines = []
            for label, name in enumerate(CATEGORIES):
                folder = root / "images" / name
                folder.mkdir(parents=True, exist_ok=True)
                rng = np.random.default_rng([self.seed, split_id, label])
                for i in range(count):
                    image, _ = render(label, self.style, rng, self.size)
                    if self.shift != "none":
                        image = apply_shift(image, self.shift, self.severity, rng)
                    rel = f"images/{name}/{split}_{i:04d}.png"
                    image.save(root / rel)
                    lines.append(f"{rel} {label}")
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
