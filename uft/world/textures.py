"""Texture banks: backgrounds, brush strokes, paper grain, edge wobble and pixel noise, built once per image size.

The banks come from a fixed seed, not from the caller's generator, so a seed gives the same pixels in every process;
a drawing picks from a bank with one uniform draw (``pick``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def pick(bank, draw: float):
    """The entry of ``bank`` that a uniform ``draw`` in [0, 1) selects."""
    return bank[int(draw * len(bank))]


def _smooth(rng, n, cells):
    """Value noise in [0, 1]: a cells x cells random grid upsampled bicubically to n x n."""
    grid = Image.fromarray(rng.random((cells + 3, cells + 3)).astype(np.float32), "F")
    up = np.asarray(grid.resize((n * (cells + 3) // cells,) * 2, Image.BICUBIC))
    off = n // (2 * cells)
    a = up[off : off + n, off : off + n]
    return (a - a.min()) / (np.ptp(a) + 1e-6)


@lru_cache(maxsize=8)
def texture_banks(s: int) -> dict[str, list[np.ndarray] | np.ndarray]:
    """Texture banks for an s x s image (and its 2s x 2s label canvas), built once from a fixed seed.

    ``bg`` (photo backgrounds), ``blotch`` (painting washes) and ``grain`` (paper) hold maps in [0, 1], ``strokes``
    brush texture in about [-1, 1], each in its eight flips and transposes; ``warp_small`` and ``warp_large`` edge
    wobbles as flat gather indices into the label map; ``noise`` (16, 3, s, s) standard normal pixel noise.
    """
    rng = np.random.default_rng(20240611)
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) / s
    bg = [_smooth(rng, s, k) for k in (3, 5, 9, 16)]  # blotches, cloudy walls (painting uses these four)
    for f, a in ((3, 0.3), (5, 1.2), (8, 2.0), (4, 2.6)):  # stripes
        bg.append(0.5 + 0.5 * np.sin(2 * np.pi * f * (x * np.cos(a) + y * np.sin(a))))
    for a in (0.4, 2.0, 3.9):  # linear gradients
        g = x * np.cos(a) + y * np.sin(a)
        bg.append((g - g.min()) / np.ptp(g))
    bg.append(np.clip(np.hypot(x - 0.4, y - 0.35) * 1.5, 0, 1))  # radial
    for k in (6, 10):  # tiles
        bg.append(((np.floor(x * k) + np.floor(y * k)) % 2).astype(np.float32))
    for f in (5, 9):  # wood grain
        bg.append(0.5 + 0.5 * np.sin(2 * np.pi * (f * y + 1.5 * _smooth(rng, s, 4))))
    bg.append(_smooth(rng, s, s // 2) * 0.6 + 0.4 * _smooth(rng, s, 6))  # grain (sand, carpet, paper)
    bg.append((np.hypot((x * 7) % 1 - 0.5, (y * 7) % 1 - 0.5) < 0.25).astype(np.float32))  # dots

    strokes = []  # brush texture: many short fat strokes along a dominant direction, in about [-1, 1]
    for _ in range(8):
        im = Image.new("L", (s, s), 128)
        d = ImageDraw.Draw(im)
        a0 = rng.uniform(0, np.pi)
        for _ in range(140):
            a = a0 + rng.normal(0, 0.25)
            px, py, ln = rng.uniform(-0.1, 1.1) * s, rng.uniform(-0.1, 1.1) * s, rng.uniform(0.08, 0.25) * s
            dx, dy = np.cos(a) * ln / 2, np.sin(a) * ln / 2
            d.line([px - dx, py - dy, px + dx, py + dy], fill=int(rng.integers(40, 216)), width=max(2, int(s * 0.045)))
        strokes.append((np.asarray(im.filter(ImageFilter.GaussianBlur(s / 150)), np.float32) - 128) / 88)

    c = 2 * s
    yy, xx = np.mgrid[0:c, 0:c]
    warps = []  # smooth displacement fields of the label canvas, as flat gather indices: hand-made wobble
    for amp in (0.012, 0.025):
        for _ in range(8):
            dx, dy = ((_smooth(rng, c, 4) - 0.5) * 2 * amp * c for _ in range(2))
            iy = np.clip(np.rint(yy + dy), 0, c - 1).astype(np.intp)
            ix = np.clip(np.rint(xx + dx), 0, c - 1).astype(np.intp)
            warps.append((iy * c + ix).ravel())
    noise = rng.standard_normal((16, 3, s, s)).astype(np.float32)
    return {
        "bg": _variants(bg),  # photo backgrounds
        "blotch": _variants(bg[:4]),  # painting washes
        "grain": _variants(bg[-2:-1]),  # paper
        "strokes": _variants(strokes),
        "warp_small": warps[:8],
        "warp_large": warps[8:],
        "noise": noise,
    }


def _variants(textures):
    """Each texture in its eight flips / transposes, contiguous (strided views slow numpy down ~3x)."""
    out = []
    for t in textures:
        for k in range(8):
            v = t[::-1] if k & 1 else t
            v = v[:, ::-1] if k & 2 else v
            out.append(np.ascontiguousarray(v.T if k & 4 else v, np.float32))
    return out
