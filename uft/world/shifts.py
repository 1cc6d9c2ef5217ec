"""Low-level corruptions that move a rendered domain away from what a model was trained on."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

SHIFTS: tuple[str, ...] = ("fog", "contrast", "noise", "blur")


def apply_shift(image: Image.Image, shift: str, severity: float, rng: np.random.Generator) -> Image.Image:
    """``image`` corrupted by ``shift`` at ``severity`` in [0, 1] (0 returns an unchanged copy).

    fog: blend towards a bright haze, ``(1 - 0.55 s) x + 0.55 s 200``, plus mild noise; contrast: shrink towards
    the mean grey level, by up to 80%; noise: additive Gaussian, sd up to 50; blur: Gaussian, radius up to
    2.5 px per 48 px of image side.
    """
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; expected one of {SHIFTS}")
    s = float(np.clip(severity, 0.0, 1.0))
    image = image.convert("RGB")
    if s == 0:
        return image.copy()
    if shift == "blur":
        return image.filter(ImageFilter.GaussianBlur(2.5 * s * image.width / 48))
    x = np.asarray(image, np.float32)
    if shift == "fog":
        x = (1 - 0.55 * s) * x + 0.55 * s * 200 + rng.normal(0, 4 * s, x.shape[:2])[..., None]
    elif shift == "contrast":
        x = x.mean() + (x - x.mean()) * (1 - 0.8 * s)
    else:
        x = x + rng.normal(0, 50 * s, x.shape)
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), "RGB")
