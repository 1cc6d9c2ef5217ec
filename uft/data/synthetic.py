"""A small generated image set for tests: coloured shapes on plain backgrounds.

Deterministic from a seed. Writes ``images/<class>/<split>_<i>.png`` and the list files ``target.txt`` and
``test.txt`` (``relative/path.png <label>``) plus ``classes.txt``. Run ``python -m uft.data.synthetic OUT``.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

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


def make_shapes(out: str | Path, per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """Write the shapes data set into ``out``: ``per_class`` maps a list name (``target``, ``test``) to the number
    of images per class. Returns ``out``."""
    out = Path(out)
    rng = random.Random(seed)
    (out / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    for split, count in per_class.items():
        lines = []
        for label, kind in enumerate(SHAPES):
            folder = out / "images" / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rel = f"images/{kind}/{split}_{i:03d}.png"
                draw_shape(kind, size, rng).save(out / rel, optimize=True)
                lines.append(f"{rel} {label}")
        (out / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--target-per-class", type=int, default=24)
    parser.add_argument("--test-per-class", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_shapes(args.out, {"target": args.target_per_class, "test": args.test_per_class}, args.size, args.seed)


if __name__ == "__main__":
    main()
