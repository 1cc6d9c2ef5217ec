"""Procedural icons in four styles: one object per image, drawn with PIL primitives and composed with numpy.

Each category is a short list of primitives (filled polygons and thick polylines) in an object frame of about
[-1, 1]^2, y pointing down. Every primitive carries a *tone* (main colour, a darker or lighter shade of it, or a
fixed natural colour such as a green stem). ``render`` poses the object (size, position, rotation, mirror, aspect),
rasterises it into a *label map* at twice the output size (label = tone, 0 = background), and each style turns that
map into pixels: the label map gives fills, silhouettes, and the part boundaries a sketch or an outline needs.
Maps taken from the 2x label map are averaged over 2x2 blocks, which anti-aliases every edge cheaply.

Everything random comes from the numpy Generator passed in; the texture banks are built once per size from a fixed
seed, so a seed gives the same pixels in every process.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

STYLES: tuple[str, ...] = ("photo", "clipart", "painting", "sketch")
POSITIONS: tuple[str, ...] = ("left", "right", "center", "top", "bottom")

# colour words used in attributes and captions, with the RGB each stands for
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "green": (45, 160, 60),
    "blue": (40, 80, 210),
    "yellow": (240, 210, 40),
    "orange": (245, 135, 25),
    "purple": (135, 55, 175),
    "pink": (245, 130, 180),
    "brown": (125, 80, 40),
    "black": (25, 25, 30),
    "white": (240, 240, 240),
    "gray": (130, 130, 130),
}
_COLOR_NAMES = tuple(COLORS)
_COLOR_RGB = np.array([COLORS[n] for n in _COLOR_NAMES], np.float32)
_FIXED = np.array([(60, 145, 55), (115, 72, 38)], np.float32)  # the GREEN and BROWN tones
INKS: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 30),
    "gray": (90, 90, 95),
    "blue": (30, 45, 125),
    "brown": (85, 55, 30),
}

# tones: label values in the label map (0 is background; CUT punches a hole back to background)
CUT, MAIN, DARK, LIGHT, GREEN, BROWN, ACCENT = 0, 1, 2, 3, 4, 5, 6
_N_TONES = 7


# ---------------------------------------------------------------------------------------------------- primitives
def _ellipse(cx, cy, rx, ry, a0=0.0, a1=360.0, n=28):
    closed = (a1 - a0) % 360 == 0
    t = np.radians(np.linspace(a0, a1, n, endpoint=not closed))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _circle(cx, cy, r, n=24):
    return _ellipse(cx, cy, r, r, n=n)


def _rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def F(tone, pts):
    """A filled polygon."""
    return ("fill", tone, np.asarray(pts, np.float32), 0.0)


def L(tone, width, pts):
    """A polyline of ``width`` (object units)."""
    return ("line", tone, np.asarray(pts, np.float32), width)


# ---------------------------------------------------------------------------------------------------- categories
def _house():
    return [
        F(DARK, _rect(0.38, -0.85, 0.62, -0.3)),  # chimney, drawn first so the roof covers its foot
        F(MAIN, _rect(-0.72, -0.1, 0.72, 0.9)),
        F(DARK, [(-1.0, 0.02), (0.0, -0.9), (1.0, 0.02)]),
        F(DARK, _rect(-0.16, 0.38, 0.2, 0.9)),
        F(LIGHT, _rect(-0.58, 0.14, -0.3, 0.42)),
        F(LIGHT, _rect(0.34, 0.14, 0.62, 0.42)),
    ]


def _tree():
    crown = [(0.0, -0.45, 0.55), (-0.45, -0.05, 0.45), (0.45, -0.05, 0.45), (0.0, 0.05, 0.5)]
    return [F(BROWN, _rect(-0.15, 0.1, 0.15, 1.0))] + [F(MAIN, _circle(x, y, r)) for x, y, r in crown]


def _car():
    body = [(-1.0, 0.3), (-1.0, -0.08), (-0.9, -0.18), (-0.45, -0.22), (-0.25, -0.58), (0.32, -0.58), (0.58, -0.22),
            (0.95, -0.14), (1.0, 0.05), (1.0, 0.3)]  # fmt: skip
    return [
        F(MAIN, body),
        F(LIGHT, [(-0.34, -0.25), (-0.19, -0.48), (-0.01, -0.48), (-0.01, -0.25)]),
        F(LIGHT, [(0.08, -0.25), (0.08, -0.48), (0.28, -0.48), (0.45, -0.25)]),
        F(DARK, _circle(-0.55, 0.3, 0.26)),
        F(DARK, _circle(0.55, 0.3, 0.26)),
        F(LIGHT, _circle(-0.55, 0.3, 0.1)),
        F(LIGHT, _circle(0.55, 0.3, 0.1)),
    ]


def _sun():
    rays = []
    for a in np.radians(np.arange(22.5, 360, 45)):  # a thin triangle per ray: reads as a spike even when small
        tip, side = np.array([np.cos(a), np.sin(a)]), 0.13 * np.array([-np.sin(a), np.cos(a)])
        rays.append(F(MAIN, [0.6 * tip + side, tip, 0.6 * tip - side]))
    return [F(MAIN, _circle(0, 0, 0.5)), *rays]


def _fish():
    return [
        F(MAIN, [(0.45, 0.0), (1.0, -0.5), (0.85, 0.0), (1.0, 0.5)]),  # tail
        F(DARK, [(-0.25, -0.36), (0.05, -0.62), (0.25, -0.3)]),  # dorsal fin
        F(MAIN, _ellipse(-0.12, 0.0, 0.72, 0.42)),
        F(DARK, _circle(-0.52, -0.1, 0.1)),
        L(DARK, 0.06, _ellipse(-0.28, 0.0, 0.2, 0.3, -60, 60, 8)),  # gill
    ]


def _umbrella():
    top = _ellipse(0, 0, 1.0, 0.8, 180, 360, 20)
    scallops = []
    for i in range(4):  # shallow arcs between the rib tips, right to left
        x0 = 1.0 - 0.5 * i
        scallops += [(x0 - 0.5 * t, -0.13 * np.sin(np.pi * t)) for t in np.linspace(0, 1, 6)[1:]]
    return [
        F(MAIN, np.concatenate([top, scallops])),
        L(DARK, 0.06, [(0, -0.8), (0, -0.95)]),
        L(DARK, 0.08, [(0, -0.1), (0, 0.75)]),
        L(DARK, 0.08, _ellipse(-0.17, 0.75, 0.17, 0.17, 0, 180, 10)),  # J hook
    ]


def _star():
    a = np.radians(np.arange(10) * 36 - 90)
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return [F(MAIN, np.stack([r * np.cos(a), 0.1 + r * np.sin(a)], 1))]


def _heart():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [F(MAIN, np.stack([x / 16, (y + 2.5) / 16], 1))]


def _key():
    return [
        F(MAIN, _circle(-0.58, 0, 0.42)),
        F(CUT, _circle(-0.58, 0, 0.2, 16)),
        F(MAIN, _rect(-0.25, -0.13, 1.0, 0.13)),
        F(MAIN, _rect(0.5, 0.05, 0.66, 0.42)),
        F(MAIN, _rect(0.8, 0.05, 0.98, 0.36)),
    ]


def _cup():
    return [
        F(DARK, _ellipse(0.05, 0.78, 0.95, 0.15)),  # saucer
        L(MAIN, 0.15, _ellipse(0.6, 0.0, 0.3, 0.33)),  # handle ring, half hidden by the body
        F(MAIN, [(-0.65, -0.6), (0.65, -0.6), (0.48, 0.72), (-0.48, 0.72)]),
        F(DARK, _ellipse(0, -0.6, 0.65, 0.14)),  # the drink seen from above
    ]


def _bottle():
    body = [(-0.38, 1.0), (-0.38, -0.1), (-0.15, -0.45), (-0.15, -0.8), (0.15, -0.8), (0.15, -0.45), (0.38, -0.1),
            (0.38, 1.0)]  # fmt: skip
    return [F(MAIN, body), F(DARK, _rect(-0.19, -1.0, 0.19, -0.78)), F(LIGHT, _rect(-0.38, 0.2, 0.38, 0.6))]


def _arrow():
    return [F(MAIN, _rect(-1.0, -0.17, 0.3, 0.17)), F(MAIN, [(0.12, -0.58), (1.0, 0.0), (0.12, 0.58)])]


def _moon():
    return [F(MAIN, _circle(0, 0, 0.9, 32)), F(CUT, _circle(0.42, -0.18, 0.76, 32))]


def _cloud():
    blobs = [(-0.66, 0.16, 0.3), (-0.22, -0.1, 0.42), (0.3, -0.22, 0.44), (0.7, 0.14, 0.32)]  # deep notches between
    return [F(MAIN, _circle(x, y, r)) for x, y, r in blobs] + [F(MAIN, _rect(-0.66, 0.12, 0.7, 0.46))]


def _flower():
    angles = np.radians(range(0, 360, 60))
    petals = [F(MAIN, _circle(0.34 * np.cos(a), -0.42 + 0.34 * np.sin(a), 0.24, 16)) for a in angles]
    return [
        L(GREEN, 0.1, [(0, -0.4), (0, 1.0)]),
        F(GREEN, [(0, 0.55), (-0.3, 0.3), (-0.6, 0.35), (-0.35, 0.58)]),
        F(GREEN, [(0, 0.45), (0.3, 0.2), (0.6, 0.25), (0.35, 0.48)]),
        *petals,
        F(ACCENT, _circle(0, -0.42, 0.17, 16)),
    ]


def _bell():
    side = [(0.88, 0.6), (0.66, 0.4), (0.55, 0.05), (0.5, -0.3)]
    dome = _ellipse(0, -0.3, 0.5, 0.5, 0, -180, 14)
    body = [*side, *dome[1:-1], *[(-x, y) for x, y in side[::-1]]]
    return [
        L(DARK, 0.09, _circle(0, -0.88, 0.12, 12).tolist() + [(0.12, -0.88)]),  # hanging loop
        F(DARK, _circle(0, 0.8, 0.17, 16)),  # clapper
        F(MAIN, body),
        F(DARK, _rect(-0.92, 0.56, 0.92, 0.7)),  # rim
    ]


def _boat():
    return [
        L(BROWN, 0.07, [(0, -1.0), (0, 0.35)]),
        F(LIGHT, [(0.07, -0.95), (0.07, 0.25), (0.75, 0.25)]),
        F(LIGHT, [(-0.07, -0.7), (-0.07, 0.25), (-0.55, 0.25)]),
        F(MAIN, [(-1.0, 0.32), (1.0, 0.32), (0.7, 0.78), (-0.7, 0.78)]),
    ]


def _lamp():
    return [
        F(DARK, _rect(-0.07, -0.25, 0.07, 0.75)),
        F(DARK, [(-0.5, 0.95), (-0.38, 0.72), (0.38, 0.72), (0.5, 0.95)]),
        F(MAIN, [(-0.35, -0.95), (0.35, -0.95), (0.68, -0.2), (-0.68, -0.2)]),
    ]


def _mushroom():
    return [
        F(LIGHT, [(-0.25, 0.0), (0.25, 0.0), (0.33, 0.95), (-0.33, 0.95)]),
        F(MAIN, np.concatenate([_ellipse(0, 0.1, 0.98, 0.95, 180, 360, 22), _ellipse(0, 0.1, 0.98, 0.12, 0, 180, 10)])),
        F(LIGHT, _circle(-0.45, -0.3, 0.14, 12)),
        F(LIGHT, _circle(0.1, -0.55, 0.16, 12)),
        F(LIGHT, _circle(0.5, -0.2, 0.12, 12)),
    ]


def _kite():
    tail = [(0, 0.55), (0.2, 0.66), (-0.05, 0.76), (0.2, 0.86)]
    return [
        L(DARK, 0.06, tail),
        F(ACCENT, [(-0.1, 0.74), (0.14, 0.64), (0.12, 0.82)]),  # a bow on the tail
        F(MAIN, [(0, -1.0), (0.58, -0.35), (0, 0.55), (-0.58, -0.35)]),
        F(ACCENT, [(0, -1.0), (0.58, -0.35), (0, -0.35)]),
        F(ACCENT, [(0, -0.35), (-0.58, -0.35), (0, 0.55)]),
    ]


def _anchor():
    return [
        L(MAIN, 0.1, _circle(0, -0.8, 0.17, 14).tolist() + [(0.17, -0.8)]),
        F(MAIN, _rect(-0.09, -0.63, 0.09, 0.9)),
        F(MAIN, _rect(-0.48, -0.48, 0.48, -0.33)),
        L(MAIN, 0.16, _ellipse(0, 0.2, 0.78, 0.72, 15, 165, 14)),
        F(MAIN, [(-0.98, 0.2), (-0.55, 0.28), (-0.8, 0.55)]),  # flukes
        F(MAIN, [(0.98, 0.2), (0.55, 0.28), (0.8, 0.55)]),
    ]


def _crown():
    points = [(-0.9, 0.3), (-0.95, -0.55), (-0.45, -0.05), (0.0, -0.72), (0.45, -0.05), (0.95, -0.55), (0.9, 0.3)]
    gems = [(-0.95, -0.6, 0.12), (0.0, -0.78, 0.12), (0.95, -0.6, 0.12), (-0.45, 0.45, 0.1), (0, 0.45, 0.1),
            (0.45, 0.45, 0.1)]  # fmt: skip
    return [F(MAIN, points), F(DARK, _rect(-0.9, 0.25, 0.9, 0.65)), *(F(ACCENT, _circle(*g, 12)) for g in gems)]


def _leaf():
    t = np.linspace(0, 1, 14)
    x = -0.75 + 1.6 * t
    w = 0.52 * np.sin(np.pi * t) ** 0.9
    blade = np.concatenate([np.stack([x, -w], 1), np.stack([x[::-1], w[::-1]], 1)])
    veins = [L(DARK, 0.05, [(x0, 0.0), (x0 + 0.28, s * 0.3)]) for x0 in (-0.4, -0.05, 0.3) for s in (-1, 1)]
    return [F(MAIN, blade), L(DARK, 0.07, [(-1.0, 0.05), (-0.75, 0.0), (0.75, 0.0)]), *veins]


def _ladder():
    rails = [L(MAIN, 0.13, [(x, -1.0), (x, 1.0)]) for x in (-0.45, 0.45)]
    return rails + [L(MAIN, 0.11, [(-0.45, y), (0.45, y)]) for y in (-0.72, -0.36, 0.0, 0.36, 0.72)]


# name -> (how far it may be rotated either way in degrees, primitives); the order fixes the category ids
_DEFS = {
    "house": (8, _house()),
    "tree": (8, _tree()),
    "car": (8, _car()),
    "sun": (180, _sun()),
    "fish": (25, _fish()),
    "umbrella": (20, _umbrella()),
    "star": (36, _star()),
    "heart": (20, _heart()),
    "key": (180, _key()),
    "cup": (10, _cup()),
    "bottle": (15, _bottle()),
    "arrow": (180, _arrow()),
    "moon": (180, _moon()),
    "cloud": (8, _cloud()),
    "flower": (15, _flower()),
    "bell": (25, _bell()),
    "boat": (12, _boat()),
    "lamp": (8, _lamp()),
    "mushroom": (15, _mushroom()),
    "kite": (25, _kite()),
    "anchor": (20, _anchor()),
    "crown": (12, _crown()),
    "leaf": (180, _leaf()),
    "ladder": (25, _ladder()),
}
CATEGORIES: tuple[str, ...] = tuple(_DEFS)


def _pack(prims):
    """All points of a category in one array (posed with one matrix product), how to split them again, and which
    points are drawn (not cut away) and so bound the object."""
    pts = np.concatenate([p[2] for p in prims]).astype(np.float64)
    ends = np.cumsum([len(p[2]) for p in prims])
    split = [(kind, tone, int(e - len(p)), int(e), w) for (kind, tone, p, w), e in zip(prims, ends)]
    drawn = np.concatenate([np.full(len(p[2]), p[1] != CUT) for p in prims])
    return pts, split, (slice(None) if drawn.all() else np.flatnonzero(drawn))


_PACKED = [(rot, *_pack(prims)) for rot, prims in _DEFS.values()]
_USED_TONES = [np.array(sorted({t for _, t, *_ in prims} - {CUT}), np.uint8) for _, prims in _DEFS.values()]


# ---------------------------------------------------------------------------------------------------- textures
def _smooth(rng, n, cells):
    """Value noise in [0, 1]: a cells x cells random grid upsampled bicubically to n x n."""
    grid = Image.fromarray(rng.random((cells + 3, cells + 3)).astype(np.float32), "F")
    up = np.asarray(grid.resize((n * (cells + 3) // cells,) * 2, Image.BICUBIC))
    off = n // (2 * cells)
    a = up[off : off + n, off : off + n]
    return (a - a.min()) / (np.ptp(a) + 1e-6)


@lru_cache(maxsize=8)
def _banks(s):
    """Texture banks for an s x s image (and its 2s x 2s label canvas), built once from a fixed seed."""
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


# ---------------------------------------------------------------------------------------------------- helpers
# Pixel work runs in numpy at the output size, channels first (3, s, s) so that per-pixel maps (s, s) and colours
# (3, 1, 1) broadcast over contiguous rows (channels-last broadcasting is ~5x slower on images this small). Only the
# label map lives at 2x. PIL only draws: each crossing between numpy and PIL costs 10-20 us, as much as several
# whole-image numpy operations. Scalars are Python floats: a numpy float64 scalar turns float32 maths into float64.
def _pick(bank, u):
    return bank[int(u * len(bank))]


def _tones(main, k, u):
    """Palette indexed by tone: the main colour (colour word ``k``, jittered), a darker and a lighter shade of it,
    fixed natural colours, and a second colour word picked by ``u`` among the others."""
    r, g, b = COLORS[_COLOR_NAMES[k]]
    lum = (0.299 * r + 0.587 * g + 0.114 * b) / 255
    n = len(_COLOR_NAMES)
    return np.stack([
        main,  # background slot: unused
        main,
        main * 0.45 if lum > 0.3 else main * 0.5 + 75,
        main * 0.35 + 165 if lum < 0.7 else main * 0.6,
        _FIXED[0],
        _FIXED[1],
        _COLOR_RGB[(k + 1 + int(u * (n - 1))) % n],
    ])  # fmt: skip


def _edges(lab):
    """Pixels on either side of a label change (part boundaries and the silhouette): 2 px wide, 1 px after 2x."""
    e = np.zeros(lab.shape, bool)
    h = lab[:, 1:] != lab[:, :-1]
    v = lab[1:] != lab[:-1]
    e[:, 1:] |= h
    e[:, :-1] |= h
    e[1:] |= v
    e[:-1] |= v
    return e


def _down(m, peak=1.0):
    """2x maps (..., 2s, 2s) of bools (or small uint8 counts, < 64) averaged over 2x2 blocks, times ``peak``."""
    m = m.view(np.uint8) if m.dtype == bool else m
    return (m[..., 0::2, 0::2] + m[..., 1::2, 0::2] + m[..., 0::2, 1::2] + m[..., 1::2, 1::2]) * np.float32(peak / 4)


def _premult(lab, pal, tones):
    """Colour premultiplied by coverage (3, s, s), so that ``out = colour + (1 - coverage) * background`` composes
    exactly, and the coverage (s, s): from the coverage of each tone used."""
    cover = _down(lab[None] == tones[:, None, None])
    return np.einsum("kc,kyx->cyx", pal[tones], cover), cover.sum(0)


@lru_cache(maxsize=16)
def _blur_matrix(s, passes):
    """(s, s) matrix of ``passes`` [1, 2, 1] / 4 filters (border pixel repeated); symmetric."""
    k = np.eye(s) * 0.5 + np.eye(s, k=1) * 0.25 + np.eye(s, k=-1) * 0.25
    k[0, 0] = k[-1, -1] = 0.75
    return np.linalg.matrix_power(k, passes).astype(np.float32)


def _blur(a, passes=2):
    """Binomial blur of a map (s, s), variance ``passes`` / 2 px^2 (2 passes ~ a Gaussian of sd 1 px): two small
    matrix products, several times faster than shifted adds or a round trip through PIL."""
    b = _blur_matrix(a.shape[0], passes)
    return b @ a @ b


def _shift(a, dy, dx):
    """``a`` moved by (dy, dx) pixels, zeros moving in."""
    out = np.zeros_like(a)
    h, w = a.shape
    dst = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    out[dst] = a[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def _mute(rgb, k):
    """Towards grey by ``k``: less saturated, a little lighter when dark."""
    return rgb * (1 - k) + (0.8 * rgb.mean(-1, keepdims=True) + 30) * k


def _far_colour(rng, obj, lo, hi, min_dist=110.0, mute=0.0):
    """A random colour (channels in [lo, hi], then muted by ``mute``) at least ``min_dist`` (RGB distance) from
    ``obj``, so that the object never melts into its background; the farthest of 12 tries if none is that far."""
    best, best_d = None, -1.0
    obj = obj.tolist()
    for _ in range(12):
        c = [lo + (hi - lo) * v for v in rng.random(3).tolist()]
        grey = 0.8 * sum(c) / 3 + 30
        c = [v * (1 - mute) + grey * mute for v in c]
        d = math.dist(c, obj)
        if d >= min_dist:
            return np.array(c, np.float32)
        if d > best_d:
            best, best_d = c, d
    return np.array(best, np.float32)


# ---------------------------------------------------------------------------------------------------- styles
# Each takes (label map at 2x, palette, rng, output size, _Drawn) and returns (float image (3, s, s), pixel noise sd).
def _photo(lab, pal, rng, s, drawn):
    """Shaded object with a drop shadow on a textured, coloured background."""
    banks = _banks(s)
    u = rng.random(8).tolist()
    objp, alpha = _premult(lab, pal, drawn.tones)
    b1 = _far_colour(rng, pal[MAIN], 20, 235, mute=0.2)
    b2 = np.minimum(np.maximum(b1 + rng.normal(0, 45, 3).astype(np.float32), 0), 255)
    bg = b1[:, None, None] + (b2 - b1)[:, None, None] * _pick(banks["bg"], u[0])

    # light from a random direction: a linear gradient across the object, darker rims ("pillow" shading), an
    # offset blurred shadow on the background and sometimes a glossy highlight on the lit side
    lx, ly = math.cos(2 * math.pi * u[1]), math.sin(2 * math.pi * u[1])
    xs = (np.arange(s, dtype=np.float32) + 0.5 - drawn.cx) / drawn.unit
    ys = (np.arange(s, dtype=np.float32) + 0.5 - drawn.cy) / drawn.unit
    soft = _blur(alpha, max(1, round(s / 8)))  # sd ~1.7 px
    shade = (1.0 - 0.28 * (xs[None, :] * lx + ys[:, None] * ly)) * (0.72 + 0.28 * soft)
    off = s * (0.02 + 0.03 * u[2])
    shadow = _shift(soft, int(round(-ly * off)), int(round(-lx * off)))
    bg *= 1 - (0.3 + 0.25 * u[3]) * shadow
    obj = objp * shade
    if u[4] < 0.5:  # (exponents capped: float32 denormals would slow every later operation ~10x)
        gx = np.exp(-np.minimum(((xs + 0.35 * lx) / 0.35) ** 2, 20))
        gy = np.exp(-np.minimum(((ys + 0.35 * ly) / 0.35) ** 2, 20))
        obj += alpha * (40 + 50 * u[5]) * gy[:, None] * gx[None, :]
    return (obj + (1 - alpha) * bg) * (0.85 + 0.27 * u[6]), 4.0


def _clipart(lab, pal, rng, s, drawn):
    """Flat saturated fills, a thick dark outline, thin dark lines between parts, a plain light background."""
    u = rng.random(5)
    objp, alpha = _premult(lab, pal, drawn.tones)
    bg = (255 - 40 * u[:3] * (u[3] < 0.75)).astype(np.float32)[:, None, None]  # a light pastel, or white
    ink = 25 + 25 * float(u[4])
    # the silhouette grown by ~1.5 px (~1 px around small objects, whose notches it would otherwise fill)
    outline = np.minimum(_blur(alpha, max(1, round(s / (24 if drawn.large else 48)))) * 8, 1)
    out = bg + (ink - bg) * outline
    out = objp + (1 - alpha) * out
    return out + (ink - out) * _down(_edges(lab) & (lab > 0)), 0.0  # thin lines between parts


def _painting(lab, pal, rng, s, drawn):
    """Wobbly shapes in muted colours, brush-stroke texture, a blotchy background, visible noise."""
    banks = _banks(s)
    u = rng.random(5).tolist()
    lab = lab.ravel()[_pick(banks["warp_large"], u[0])].reshape(lab.shape)  # hand-made, wobbly edges
    pal = _mute(pal, 0.3)
    objp, alpha = _premult(lab, pal, drawn.tones)
    b1 = _far_colour(rng, pal[MAIN], 40, 220, 110, mute=0.45)
    b2 = np.minimum(np.maximum(b1 + rng.normal(0, 40, 3).astype(np.float32), 0), 255)
    bg = b1[:, None, None] + (b2 - b1)[:, None, None] * _pick(banks["blotch"], u[1])
    bg *= 1 + 0.12 * _pick(banks["strokes"], u[2])
    mod = 1 + 0.17 * _pick(banks["strokes"], u[3]) + 0.2 * (_pick(banks["blotch"], u[4]) - 0.5)
    return objp * mod + (1 - alpha) * bg, 7.0


def _sketch(lab, pal, rng, s, drawn):
    """Thin dark lines (silhouette and part boundaries) on paper, sometimes retraced with a different wobble."""
    banks = _banks(s)
    u = rng.random(9)
    paper = (np.array((250, 247, 238)) - 14 * u[:3]).astype(np.float32)[:, None, None]
    out = paper * (1 - 0.05 * _pick(banks["grain"], u[3]))
    flat, warps = lab.ravel(), banks["warp_small"]
    line = _edges(flat[_pick(warps, u[4])].reshape(lab.shape)).view(np.uint8) * np.uint8(3)
    if u[5] < 0.6:  # a fainter retrace
        line = np.maximum(line, _edges(flat[_pick(warps, u[6])].reshape(lab.shape)).view(np.uint8))
    ink = np.asarray(INKS[drawn.colour], np.float32)[:, None, None]
    return out + (ink - out) * _down(line, 0.8 + 0.2 * u[7]), 2.5


class _Drawn(NamedTuple):
    """What the styles need to know about the drawn object, in output pixels."""

    cx: float  # centre of its bounding box
    cy: float
    unit: float  # pixels per object-frame unit (the frame spans about [-1, 1])
    large: bool
    colour: str  # its colour word (the ink, for a sketch)
    tones: np.ndarray  # the tones its primitives use


_STYLE_FNS = {"photo": _photo, "clipart": _clipart, "painting": _painting, "sketch": _sketch}


# ---------------------------------------------------------------------------------------------------- render
def render(category: int, style: str, rng: np.random.Generator, size: int = 48) -> tuple[Image.Image, dict]:
    """One ``size`` x ``size`` RGB image of ``CATEGORIES[category]`` in ``style``.

    Returns ``(image, attributes)``; attributes describe what was drawn: ``color`` (a key of ``COLORS``; the ink
    for a sketch), ``size`` (small | large), ``position`` (one of ``POSITIONS``), ``angle`` (degrees) and ``mirrored``.
    """
    if style not in _STYLE_FNS:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    if not 0 <= category < len(CATEGORIES):
        raise ValueError(f"category {category} out of range 0..{len(CATEGORIES) - 1}")
    c = 2 * size  # the label map is drawn at 2x and reduced: anti-aliased edges
    max_rot, pts, prims, bounding = _PACKED[category]
    u = rng.random(12).tolist()  # one call for all pose and colour draws (each Generator call costs 1-3 us)

    # pose: object-frame points -> mirrored, stretched, rotated; then scaled and placed by their bounding box
    large = u[0] < 0.5
    extent = 0.66 + 0.18 * u[1] if large else 0.4 + 0.14 * u[1]  # longest side / image side
    angle = max_rot * (2 * u[2] - 1)
    mirrored = u[3] < 0.5
    aspect = 0.88 + 0.24 * u[4]
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    sx, sy = (-aspect if mirrored else aspect), 1 / aspect
    p = pts @ np.array([[cos * sx, sin * sx], [-sin * sy, cos * sy]])  # rotate(stretch(mirror(points)))
    (x0, y0), (x1, y1) = p[bounding].min(0).tolist(), p[bounding].max(0).tolist()
    scale = extent * c / max(x1 - x0, y1 - y0)
    fx = max(c / 2 - (x1 - x0) * scale / 2 - c * 0.03, 0)  # room to move before the object leaves the frame
    fy = max(c / 2 - (y1 - y0) * scale / 2 - c * 0.03, 0)
    position = "center" if large else POSITIONS[int(u[5] * len(POSITIONS))]  # a large object has no room to move
    jx, jy, push = 2 * u[6] - 1, 2 * u[7] - 1, 0.6 + 0.4 * u[8]
    if position in ("left", "right"):
        dx, dy = push * fx * (-1 if position == "left" else 1), 0.3 * jy * fy
    elif position in ("top", "bottom"):
        dx, dy = 0.3 * jx * fx, push * fy * (-1 if position == "top" else 1)
    else:
        dx, dy = jx * min(fx, c * 0.05), jy * min(fy, c * 0.05)
    cx, cy = c / 2 + dx, c / 2 + dy
    p = p * scale + np.array([cx - (x0 + x1) / 2 * scale, cy - (y0 + y1) / 2 * scale])

    im = Image.new("L", (c, c), 0)
    draw = ImageDraw.Draw(im)
    for kind, tone, i, j, w in prims:
        xy = p[i:j].ravel().tolist()
        if kind == "fill":
            draw.polygon(xy, fill=tone)
        else:
            draw.line(xy, fill=tone, width=max(1, int(round(w * scale))), joint="curve")
    lab = np.frombuffer(im.tobytes(), np.uint8).reshape(c, c)

    if style == "sketch":
        colour, pal = tuple(INKS)[int(u[9] * len(INKS))], None
    else:
        k = int(u[9] * len(_COLOR_NAMES))
        colour = _COLOR_NAMES[k]
        main = _COLOR_RGB[k] + rng.normal(0, 6.0 if style == "clipart" else 14.0, 3).astype(np.float32)
        main = np.minimum(np.maximum(main, 0), 255)
        pal = _tones(main, k, u[10])
    drawn = _Drawn(cx / 2, cy / 2, scale / 2, large, colour, _USED_TONES[category])
    out, noise_sd = _STYLE_FNS[style](lab, pal, rng, size, drawn)
    if noise_sd:
        out += _pick(_banks(size)["noise"], u[11]) * noise_sd
    rgb = np.ascontiguousarray(out.clip(0, 255).astype(np.uint8).transpose(1, 2, 0))  # channels last for PIL
    attrs = {"color": colour, "size": "large" if large else "small", "position": position, "angle": angle,
             "mirrored": mirrored}  # fmt: skip
    return Image.frombytes("RGB", (size, size), rgb), attrs
