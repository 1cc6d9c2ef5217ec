"""The four styles: how a label map becomes pixels (photo, clipart, painting, sketch), and the pixel operations they
share."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from uft.world.colors import INKS, MAIN
from uft.world.textures import pick, texture_banks


# Pixel work runs in numpy at the output size, channels first (3, s, s) so that per-pixel maps (s, s) and colours
# (3, 1, 1) broadcast over contiguous rows (channels-last broadcasting is ~5x slower on images this small). Only the
# label map lives at 2x. PIL only draws: each crossing between numpy and PIL costs 10-20 us, as much as several
# whole-image numpy operations. Scalars are Python floats: a numpy float64 scalar turns float32 maths into float64.
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


class Drawn(NamedTuple):
    """What the styles need to know about the drawn object, in output pixels."""

    cx: float  # centre of its bounding box
    cy: float
    unit: float  # pixels per object-frame unit (the frame spans about [-1, 1])
    large: bool
    colour: str  # its colour word (the ink, for a sketch)
    tones: np.ndarray  # the tones its primitives use


# Each takes (label map at 2x, palette, rng, output size, Drawn) and returns (float image (3, s, s), pixel noise sd).
def _photo(lab, pal, rng, s, drawn):
    """Shaded object with a drop shadow on a textured, coloured background."""
    banks = texture_banks(s)
    (
        texture_draw,
        light_draw,  # the light's direction
        shadow_offset_draw,
        shadow_depth_draw,
        gloss_draw,  # a highlight or none
        gloss_strength_draw,
        exposure_draw,
        _,  # unused, but drawn: it keeps every seed's pixels as they were
    ) = rng.random(8).tolist()
    objp, alpha = _premult(lab, pal, drawn.tones)
    b1 = _far_colour(rng, pal[MAIN], 20, 235, mute=0.2)
    b2 = np.minimum(np.maximum(b1 + rng.normal(0, 45, 3).astype(np.float32), 0), 255)
    bg = b1[:, None, None] + (b2 - b1)[:, None, None] * pick(banks["bg"], texture_draw)

    # light from a random direction: a linear gradient across the object, darker rims ("pillow" shading), an
    # offset blurred shadow on the background and sometimes a glossy highlight on the lit side
    lx, ly = math.cos(2 * math.pi * light_draw), math.sin(2 * math.pi * light_draw)
    xs = (np.arange(s, dtype=np.float32) + 0.5 - drawn.cx) / drawn.unit
    ys = (np.arange(s, dtype=np.float32) + 0.5 - drawn.cy) / drawn.unit
    soft = _blur(alpha, max(1, round(s / 8)))  # sd ~1.7 px
    shade = (1.0 - 0.28 * (xs[None, :] * lx + ys[:, None] * ly)) * (0.72 + 0.28 * soft)
    off = s * (0.02 + 0.03 * shadow_offset_draw)
    shadow = _shift(soft, int(round(-ly * off)), int(round(-lx * off)))
    bg *= 1 - (0.3 + 0.25 * shadow_depth_draw) * shadow
    obj = objp * shade
    if gloss_draw < 0.5:  # (exponents capped: float32 denormals would slow every later operation ~10x)
        gx = np.exp(-np.minimum(((xs + 0.35 * lx) / 0.35) ** 2, 20))
        gy = np.exp(-np.minimum(((ys + 0.35 * ly) / 0.35) ** 2, 20))
        obj += alpha * (40 + 50 * gloss_strength_draw) * gy[:, None] * gx[None, :]
    return (obj + (1 - alpha) * bg) * (0.85 + 0.27 * exposure_draw), 4.0


def _clipart(lab, pal, rng, s, drawn):
    """Flat saturated fills, a thick dark outline, thin dark lines between parts, a plain light background."""
    draws = rng.random(5)
    tint = draws[:3]  # how far each channel of a pastel background is from white
    pastel_draw, ink_draw = draws[3:].tolist()
    objp, alpha = _premult(lab, pal, drawn.tones)
    bg = (255 - 40 * tint * (pastel_draw < 0.75)).astype(np.float32)[:, None, None]  # a light pastel, or white
    ink = 25 + 25 * ink_draw
    # the silhouette grown by ~1.5 px (~1 px around small objects, whose notches it would otherwise fill)
    outline = np.minimum(_blur(alpha, max(1, round(s / (24 if drawn.large else 48)))) * 8, 1)
    out = bg + (ink - bg) * outline
    out = objp + (1 - alpha) * out
    return out + (ink - out) * _down(_edges(lab) & (lab > 0)), 0.0  # thin lines between parts


def _painting(lab, pal, rng, s, drawn):
    """Wobbly shapes in muted colours, brush-stroke texture, a blotchy background, visible noise."""
    banks = texture_banks(s)
    warp_draw, wash_draw, background_strokes_draw, object_strokes_draw, object_wash_draw = rng.random(5).tolist()
    lab = lab.ravel()[pick(banks["warp_large"], warp_draw)].reshape(lab.shape)  # hand-made, wobbly edges
    pal = _mute(pal, 0.3)
    objp, alpha = _premult(lab, pal, drawn.tones)
    b1 = _far_colour(rng, pal[MAIN], 40, 220, 110, mute=0.45)
    b2 = np.minimum(np.maximum(b1 + rng.normal(0, 40, 3).astype(np.float32), 0), 255)
    bg = b1[:, None, None] + (b2 - b1)[:, None, None] * pick(banks["blotch"], wash_draw)
    bg *= 1 + 0.12 * pick(banks["strokes"], background_strokes_draw)
    strokes, wash = pick(banks["strokes"], object_strokes_draw), pick(banks["blotch"], object_wash_draw)
    mod = 1 + 0.17 * strokes + 0.2 * (wash - 0.5)
    return objp * mod + (1 - alpha) * bg, 7.0


def _sketch(lab, pal, rng, s, drawn):
    """Thin dark lines (silhouette and part boundaries) on paper, sometimes retraced with a different wobble."""
    banks = texture_banks(s)
    draws = rng.random(9)
    tint = draws[:3]  # how yellowed the paper is, per channel
    # (the last draw is unused, but drawn: it keeps every seed's pixels as they were)
    grain_draw, warp_draw, retrace_draw, retrace_warp_draw, ink_strength_draw, _ = draws[3:].tolist()
    paper = (np.array((250, 247, 238)) - 14 * tint).astype(np.float32)[:, None, None]
    out = paper * (1 - 0.05 * pick(banks["grain"], grain_draw))
    flat, warps = lab.ravel(), banks["warp_small"]
    line = _edges(flat[pick(warps, warp_draw)].reshape(lab.shape)).view(np.uint8) * np.uint8(3)
    if retrace_draw < 0.6:  # a fainter retrace
        line = np.maximum(line, _edges(flat[pick(warps, retrace_warp_draw)].reshape(lab.shape)).view(np.uint8))
    ink = np.asarray(INKS[drawn.colour], np.float32)[:, None, None]
    return out + (ink - out) * _down(line, 0.8 + 0.2 * ink_strength_draw), 2.5


STYLE_FUNCTIONS = {"photo": _photo, "clipart": _clipart, "painting": _painting, "sketch": _sketch}
STYLES: tuple[str, ...] = tuple(STYLE_FUNCTIONS)
