"""What icons are made of: a primitive (a filled polygon or a thick polyline in a tone) and the outlines they use.

Points live in an object frame of about [-1, 1]^2, y pointing down. The tone (see ``uft.world.colors``) is the label
a primitive draws into the label map: the main colour, a darker or lighter shade of it, or a fixed natural colour
such as a green stem. Later primitives cover earlier ones; a CUT primitive punches a hole back to the background.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Primitive(NamedTuple):
    """One part of an icon: build it with ``fill`` or ``line``."""

    kind: str  # "fill" (a polygon) or "line" (a polyline)
    tone: int  # the label it draws
    width: float  # line width in object units (0 for a fill)
    points: np.ndarray  # (n, 2) float32 vertices in the object frame


def fill(tone: int, points) -> Primitive:
    """A polygon through ``points``, filled with ``tone``."""
    return Primitive("fill", tone, 0.0, np.asarray(points, np.float32))


def line(tone: int, width: float, points) -> Primitive:
    """A polyline through ``points`` in ``tone``, ``width`` object units thick."""
    return Primitive("line", tone, width, np.asarray(points, np.float32))


def ellipse(cx, cy, rx, ry, a0=0.0, a1=360.0, n=28) -> np.ndarray:
    """``n`` points on an ellipse (an arc from ``a0`` to ``a1`` degrees, both ends included, unless it closes)."""
    closed = (a1 - a0) % 360 == 0
    t = np.radians(np.linspace(a0, a1, n, endpoint=not closed))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def circle(cx, cy, r, n=24) -> np.ndarray:
    return ellipse(cx, cy, r, r, n=n)


def rect(x0, y0, x1, y1) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
