"""A procedural image world for contrastive pretraining and domain shift: icons of everyday things in four
styles (photo, clipart, painting, sketch), with captions and low-level corruptions. Plain numpy / PIL.

>>> rng = np.random.default_rng(0)
>>> image, category, style, text = sample_pair(rng, ("photo", "clipart"))
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from uft.world.captions import caption
from uft.world.render import render
from uft.world.shapes import CATEGORIES
from uft.world.shifts import SHIFTS, apply_shift
from uft.world.styles import STYLES

__all__ = ["CATEGORIES", "SHIFTS", "STYLES", "apply_shift", "caption", "render", "sample_pair"]


def sample_pair(
    rng: np.random.Generator,
    styles: tuple[str, ...],
    size: int = 48,
    style_weights: tuple[float, ...] | None = None,
) -> tuple[Image.Image, int, str, str]:
    """A random (image, category, style, caption): the category uniform, the style drawn from ``styles`` with
    ``style_weights`` (uniform when None; a weight of 0 never comes up)."""
    styles = tuple(styles)
    if not styles:
        raise ValueError("styles is empty")
    if style_weights is None:
        style = styles[int(rng.integers(len(styles)))]
    else:
        w = np.asarray(style_weights, np.float64)
        if w.shape != (len(styles),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"style_weights {style_weights} must be {len(styles)} non-negative numbers, not all 0")
        style = styles[int(rng.choice(len(styles), p=w / w.sum()))]
    category = int(rng.integers(len(CATEGORIES)))
    image, attributes = render(category, style, rng, size)
    return image, category, style, caption(category, style, attributes, rng)
