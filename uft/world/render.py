"""Rendering one image: the icon posed (size, position, rotation, mirror, aspect), rasterised into a label map and
painted in a style; the public entry point ``render`` and the vocabulary of what it draws.

``render`` poses a category's primitives (``uft.world.shapes``), rasterises them into a *label map* at twice the
output size (label = tone, 0 = background), and a style (``uft.world.styles``) turns that map into pixels: the label
map gives fills, silhouettes, and the part boundaries a sketch or an outline needs. Maps taken from the 2x label map
are averaged over 2x2 blocks, which anti-aliases every edge cheaply.

Everything random comes from the numpy Generator passed in; the texture banks (``uft.world.textures``) are built
once per size from a fixed seed, so a seed gives the same pixels in every process.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from uft.world.colors import COLOR_NAMES, COLOR_RGB, COLORS, CUT, INKS, palette
from uft.world.primitives import Primitive
from uft.world.shapes import CATEGORIES, ICONS
from uft.world.styles import STYLE_FUNCTIONS, STYLES, Drawn
from uft.world.textures import pick, texture_banks

# the world's vocabulary, importable from here beside ``render`` (attributes name COLORS, INKS and POSITIONS)
__all__ = ["CATEGORIES", "COLORS", "INKS", "POSITIONS", "STYLES", "render"]

POSITIONS: tuple[str, ...] = ("left", "right", "center", "top", "bottom")


class _Posable(NamedTuple):
    """A category ready to pose: all its points in one array, posed with one matrix product."""

    max_rotation: float  # how far it may be rotated either way, degrees
    points: np.ndarray  # (n, 2) float64, every primitive's points in drawing order
    spans: list[tuple[Primitive, int, int]]  # each primitive with the rows of ``points`` that are its own
    bounding: slice | np.ndarray  # the points that are drawn (not cut away) and so bound the object
    tones: np.ndarray  # the tones it draws (uint8, sorted, CUT left out)


def _posable(max_rotation: float, prims: list[Primitive]) -> _Posable:
    points = np.concatenate([p.points for p in prims]).astype(np.float64)
    ends = np.cumsum([len(p.points) for p in prims])
    spans = [(p, int(end - len(p.points)), int(end)) for p, end in zip(prims, ends)]
    drawn = np.concatenate([np.full(len(p.points), p.tone != CUT) for p in prims])
    bounding = slice(None) if drawn.all() else np.flatnonzero(drawn)
    tones = np.array(sorted({p.tone for p in prims} - {CUT}), np.uint8)
    return _Posable(max_rotation, points, spans, bounding, tones)


_POSABLE = [_posable(max_rotation, prims) for max_rotation, prims in ICONS.values()]


def render(category: int, style: str, rng: np.random.Generator, size: int = 48) -> tuple[Image.Image, dict]:
    """One ``size`` x ``size`` RGB image of ``CATEGORIES[category]`` in ``style``.

    Returns ``(image, attributes)``; attributes describe what was drawn: ``color`` (a key of ``COLORS``; the ink
    for a sketch), ``size`` (small | large), ``position`` (one of ``POSITIONS``), ``angle`` (degrees) and ``mirrored``.
    """
    if style not in STYLE_FUNCTIONS:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    if not 0 <= category < len(CATEGORIES):
        raise ValueError(f"category {category} out of range 0..{len(CATEGORIES) - 1}")
    c = 2 * size  # the label map is drawn at 2x and reduced: anti-aliased edges
    icon = _POSABLE[category]
    (  # one call for all pose and colour draws (each Generator call costs 1-3 us); uniform in [0, 1)
        size_draw,  # small or large
        extent_draw,  # how large within that class
        angle_draw,
        mirror_draw,
        aspect_draw,
        position_draw,  # where a small object goes
        jitter_x_draw,  # and how far it strays from there
        jitter_y_draw,
        push_draw,  # how far towards the edge it goes
        colour_draw,  # its colour word (a sketch: its ink)
        accent_draw,  # the palette's ACCENT colour word
        noise_draw,  # which pixel noise
    ) = rng.random(12).tolist()

    # pose: object-frame points -> mirrored, stretched, rotated; then scaled and placed by their bounding box
    large = size_draw < 0.5
    extent = 0.66 + 0.18 * extent_draw if large else 0.4 + 0.14 * extent_draw  # longest side / image side
    angle = icon.max_rotation * (2 * angle_draw - 1)
    mirrored = mirror_draw < 0.5
    aspect = 0.88 + 0.24 * aspect_draw
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    sx, sy = (-aspect if mirrored else aspect), 1 / aspect
    p = icon.points @ np.array([[cos * sx, sin * sx], [-sin * sy, cos * sy]])  # rotate(stretch(mirror(points)))
    (x0, y0), (x1, y1) = p[icon.bounding].min(0).tolist(), p[icon.bounding].max(0).tolist()
    scale = extent * c / max(x1 - x0, y1 - y0)
    fx = max(c / 2 - (x1 - x0) * scale / 2 - c * 0.03, 0)  # room to move before the object leaves the frame
    fy = max(c / 2 - (y1 - y0) * scale / 2 - c * 0.03, 0)
    position = "center" if large else POSITIONS[int(position_draw * len(POSITIONS))]  # large: no room to move
    jx, jy, push = 2 * jitter_x_draw - 1, 2 * jitter_y_draw - 1, 0.6 + 0.4 * push_draw
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
    for prim, start, end in icon.spans:
        xy = p[start:end].ravel().tolist()
        if prim.kind == "fill":
            draw.polygon(xy, fill=prim.tone)
        else:
            draw.line(xy, fill=prim.tone, width=max(1, int(round(prim.width * scale))), joint="curve")
    lab = np.frombuffer(im.tobytes(), np.uint8).reshape(c, c)

    if style == "sketch":
        colour, pal = tuple(INKS)[int(colour_draw * len(INKS))], None
    else:
        k = int(colour_draw * len(COLOR_NAMES))
        colour = COLOR_NAMES[k]
        main = COLOR_RGB[k] + rng.normal(0, 6.0 if style == "clipart" else 14.0, 3).astype(np.float32)
        main = np.minimum(np.maximum(main, 0), 255)
        pal = palette(main, k, accent_draw)
    drawn = Drawn(cx / 2, cy / 2, scale / 2, large, colour, icon.tones)
    out, noise_sd = STYLE_FUNCTIONS[style](lab, pal, rng, size, drawn)
    if noise_sd:
        out += pick(texture_banks(size)["noise"], noise_draw) * noise_sd
    rgb = np.ascontiguousarray(out.clip(0, 255).astype(np.uint8).transpose(1, 2, 0))  # channels last for PIL
    attrs = {"color": colour, "size": "large" if large else "small", "position": position, "angle": angle,
             "mirrored": mirrored}  # fmt: skip
    return Image.frombytes("RGB", (size, size), rgb), attrs
