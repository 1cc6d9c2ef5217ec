"""A small generated image set for tests: coloured shapes on plain backgrounds, as a data recipe.

Deterministic from a seed; the recipes' layout (``classes.txt``, ``target.txt``, ``test.txt``,
``images/<class>/<split>_<i>.png``). Run ``python -m uft.data.synthetic OUT``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

from uft.data.recipes import DataRecipe, write_labeled_images

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "horizontal_bar")


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        angles = [-90, 30, 150]
        return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in angles]
    if kind == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if kind == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            angle = math.radians(-90 + 36 * i)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(kind)


def draw_shape(kind: str, size: int, rng: random.Random) -> Image.Image:
    """One image of ``kind`` with random colours, position and scale."""
    background = tuple(rng.randint(0, 255) for _ in range(3))
    color = tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=color)
    elif kind == "square":
        draw.rectangle(box, fill=color)
    elif kind == "ring":
        draw.ellipse(box, outline=color, width=max(2, int(r / 3)))
    elif kind == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=color)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=color)
    elif kind == "horizontal_bar":
        draw.rectangle((cx - r, cy - r / 3, cx + r, cy + r / 3), fill=color)
    else:
        draw.polygon(_polygon(kind, cx, cy, r), fill=color)
    return img


class GeneratedShapes(DataRecipe):
    """Eight shape classes in random colours, positions and scales.

    Args:
        seed: seed of the drawing.
        size: image side in pixels.
        target_per_class: target images per class.
        test_per_class: test images per class (0: no test list).
    """

    def __init__(self, seed: int = 0, size: int = 32, target_per_class: int = 24, test_per_class: int = 12) -> None:
        self.seed, self.size = seed, size
        self.target_per_class, self.test_per_class = target_per_class, test_per_class

    def params(self) -> dict:
        return dict(vars(self))

    def describe(self) -> str:
        count = len(SHAPES) * (self.target_per_class + self.test_per_class)
        return f"generated shapes ({count} images of {self.size}x{self.size} pixels)"

    def class_names(self) -> list[str]:
        return list(SHAPES)

    def make(self, root: Path) -> None:
        rng = random.Random(self.seed)  # one stream over all splits and classes, in file order

        def images(split_index: int, label: int):
            while True:
                yield draw_shape(SHAPES[label], self.size, rng)

        counts = {"target": self.target_per_class, "test": self.test_per_class}
        write_labeled_images(root, list(SHAPES), counts, images, digits=3, optimize=True)


def make_shapes(out: str | Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """Make the shapes data set in ``out`` (a new or empty folder): ``per_class`` gives the images per class of
    ``target`` and ``test``. Returns ``out``."""
    recipe = GeneratedShapes(seed, size, per_class.get("target", 0), per_class.get("test", 0))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stderr(io.StringIO()):  # the recipe's lines about rendering: noise in tests
        return recipe.ensure(out).root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--target-per-class", type=int, default=24)
    parser.add_argument("--test-per-class", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    GeneratedShapes(args.seed, args.size, args.target_per_class, args.test_per_class).ensure(args.out)


if __name__ == "__main__":
    main()
