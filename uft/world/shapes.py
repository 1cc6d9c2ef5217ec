"""The 24 icons: each category's geometry as a list of primitives (``uft.world.primitives``), in drawing order,
and how far it may be rotated; the order of ``ICONS`` fixes the category ids."""

from __future__ import annotations

import numpy as np

from uft.world.colors import ACCENT, BROWN, CUT, DARK, GREEN, LIGHT, MAIN
from uft.world.primitives import Primitive, circle, ellipse, fill, line, rect


def _house():
    return [
        fill(DARK, rect(0.38, -0.85, 0.62, -0.3)),  # chimney, drawn first so the roof covers its foot
        fill(MAIN, rect(-0.72, -0.1, 0.72, 0.9)),
        fill(DARK, [(-1.0, 0.02), (0.0, -0.9), (1.0, 0.02)]),
        fill(DARK, rect(-0.16, 0.38, 0.2, 0.9)),
        fill(LIGHT, rect(-0.58, 0.14, -0.3, 0.42)),
        fill(LIGHT, rect(0.34, 0.14, 0.62, 0.42)),
    ]


def _tree():
    crown = [(0.0, -0.45, 0.55), (-0.45, -0.05, 0.45), (0.45, -0.05, 0.45), (0.0, 0.05, 0.5)]
    return [fill(BROWN, rect(-0.15, 0.1, 0.15, 1.0))] + [fill(MAIN, circle(x, y, r)) for x, y, r in crown]


def _car():
    body = [(-1.0, 0.3), (-1.0, -0.08), (-0.9, -0.18), (-0.45, -0.22), (-0.25, -0.58), (0.32, -0.58), (0.58, -0.22),
            (0.95, -0.14), (1.0, 0.05), (1.0, 0.3)]  # fmt: skip
    return [
        fill(MAIN, body),
        fill(LIGHT, [(-0.34, -0.25), (-0.19, -0.48), (-0.01, -0.48), (-0.01, -0.25)]),
        fill(LIGHT, [(0.08, -0.25), (0.08, -0.48), (0.28, -0.48), (0.45, -0.25)]),
        fill(DARK, circle(-0.55, 0.3, 0.26)),
        fill(DARK, circle(0.55, 0.3, 0.26)),
        fill(LIGHT, circle(-0.55, 0.3, 0.1)),
        fill(LIGHT, circle(0.55, 0.3, 0.1)),
    ]


def _sun():
    rays = []
    for a in np.radians(np.arange(22.5, 360, 45)):  # a thin triangle per ray: reads as a spike even when small
        tip, side = np.array([np.cos(a), np.sin(a)]), 0.13 * np.array([-np.sin(a), np.cos(a)])
        rays.append(fill(MAIN, [0.6 * tip + side, tip, 0.6 * tip - side]))
    return [fill(MAIN, circle(0, 0, 0.5)), *rays]


def _fish():
    return [
        fill(MAIN, [(0.45, 0.0), (1.0, -0.5), (0.85, 0.0), (1.0, 0.5)]),  # tail
        fill(DARK, [(-0.25, -0.36), (0.05, -0.62), (0.25, -0.3)]),  # dorsal fin
        fill(MAIN, ellipse(-0.12, 0.0, 0.72, 0.42)),
        fill(DARK, circle(-0.52, -0.1, 0.1)),
        line(DARK, 0.06, ellipse(-0.28, 0.0, 0.2, 0.3, -60, 60, 8)),  # gill
    ]


def _umbrella():
    top = ellipse(0, 0, 1.0, 0.8, 180, 360, 20)
    scallops = []
    for i in range(4):  # shallow arcs between the rib tips, right to left
        x0 = 1.0 - 0.5 * i
        scallops += [(x0 - 0.5 * t, -0.13 * np.sin(np.pi * t)) for t in np.linspace(0, 1, 6)[1:]]
    return [
        fill(MAIN, np.concatenate([top, scallops])),
        line(DARK, 0.06, [(0, -0.8), (0, -0.95)]),
        line(DARK, 0.08, [(0, -0.1), (0, 0.75)]),
        line(DARK, 0.08, ellipse(-0.17, 0.75, 0.17, 0.17, 0, 180, 10)),  # J hook
    ]


def _star():
    a = np.radians(np.arange(10) * 36 - 90)
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return [fill(MAIN, np.stack([r * np.cos(a), 0.1 + r * np.sin(a)], 1))]


def _heart():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return [fill(MAIN, np.stack([x / 16, (y + 2.5) / 16], 1))]


def _key():
    return [
        fill(MAIN, circle(-0.58, 0, 0.42)),
        fill(CUT, circle(-0.58, 0, 0.2, 16)),
        fill(MAIN, rect(-0.25, -0.13, 1.0, 0.13)),
        fill(MAIN, rect(0.5, 0.05, 0.66, 0.42)),
        fill(MAIN, rect(0.8, 0.05, 0.98, 0.36)),
    ]


def _cup():
    return [
        fill(DARK, ellipse(0.05, 0.78, 0.95, 0.15)),  # saucer
        line(MAIN, 0.15, ellipse(0.6, 0.0, 0.3, 0.33)),  # handle ring, half hidden by the body
        fill(MAIN, [(-0.65, -0.6), (0.65, -0.6), (0.48, 0.72), (-0.48, 0.72)]),
        fill(DARK, ellipse(0, -0.6, 0.65, 0.14)),  # the drink seen from above
    ]


def _bottle():
    body = [(-0.38, 1.0), (-0.38, -0.1), (-0.15, -0.45), (-0.15, -0.8), (0.15, -0.8), (0.15, -0.45), (0.38, -0.1),
            (0.38, 1.0)]  # fmt: skip
    return [fill(MAIN, body), fill(DARK, rect(-0.19, -1.0, 0.19, -0.78)), fill(LIGHT, rect(-0.38, 0.2, 0.38, 0.6))]


def _arrow():
    return [fill(MAIN, rect(-1.0, -0.17, 0.3, 0.17)), fill(MAIN, [(0.12, -0.58), (1.0, 0.0), (0.12, 0.58)])]


def _moon():
    return [fill(MAIN, circle(0, 0, 0.9, 32)), fill(CUT, circle(0.42, -0.18, 0.76, 32))]


def _cloud():
    blobs = [(-0.66, 0.16, 0.3), (-0.22, -0.1, 0.42), (0.3, -0.22, 0.44), (0.7, 0.14, 0.32)]  # deep notches between
    return [fill(MAIN, circle(x, y, r)) for x, y, r in blobs] + [fill(MAIN, rect(-0.66, 0.12, 0.7, 0.46))]


def _flower():
    angles = np.radians(range(0, 360, 60))
    petals = [fill(MAIN, circle(0.34 * np.cos(a), -0.42 + 0.34 * np.sin(a), 0.24, 16)) for a in angles]
    return [
        line(GREEN, 0.1, [(0, -0.4), (0, 1.0)]),
        fill(GREEN, [(0, 0.55), (-0.3, 0.3), (-0.6, 0.35), (-0.35, 0.58)]),
        fill(GREEN, [(0, 0.45), (0.3, 0.2), (0.6, 0.25), (0.35, 0.48)]),
        *petals,
        fill(ACCENT, circle(0, -0.42, 0.17, 16)),
    ]


def _bell():
    side = [(0.88, 0.6), (0.66, 0.4), (0.55, 0.05), (0.5, -0.3)]
    dome = ellipse(0, -0.3, 0.5, 0.5, 0, -180, 14)
    body = [*side, *dome[1:-1], *[(-x, y) for x, y in side[::-1]]]
    return [
        line(DARK, 0.09, circle(0, -0.88, 0.12, 12).tolist() + [(0.12, -0.88)]),  # hanging loop
        fill(DARK, circle(0, 0.8, 0.17, 16)),  # clapper
        fill(MAIN, body),
        fill(DARK, rect(-0.92, 0.56, 0.92, 0.7)),  # rim
    ]


def _boat():
    return [
        line(BROWN, 0.07, [(0, -1.0), (0, 0.35)]),
        fill(LIGHT, [(0.07, -0.95), (0.07, 0.25), (0.75, 0.25)]),
        fill(LIGHT, [(-0.07, -0.7), (-0.07, 0.25), (-0.55, 0.25)]),
        fill(MAIN, [(-1.0, 0.32), (1.0, 0.32), (0.7, 0.78), (-0.7, 0.78)]),
    ]


def _lamp():
    return [
        fill(DARK, rect(-0.07, -0.25, 0.07, 0.75)),
        fill(DARK, [(-0.5, 0.95), (-0.38, 0.72), (0.38, 0.72), (0.5, 0.95)]),
        fill(MAIN, [(-0.35, -0.95), (0.35, -0.95), (0.68, -0.2), (-0.68, -0.2)]),
    ]


def _mushroom():
    cap = np.concatenate([ellipse(0, 0.1, 0.98, 0.95, 180, 360, 22), ellipse(0, 0.1, 0.98, 0.12, 0, 180, 10)])
    return [
        fill(LIGHT, [(-0.25, 0.0), (0.25, 0.0), (0.33, 0.95), (-0.33, 0.95)]),
        fill(MAIN, cap),
        fill(LIGHT, circle(-0.45, -0.3, 0.14, 12)),
        fill(LIGHT, circle(0.1, -0.55, 0.16, 12)),
        fill(LIGHT, circle(0.5, -0.2, 0.12, 12)),
    ]


def _kite():
    tail = [(0, 0.55), (0.2, 0.66), (-0.05, 0.76), (0.2, 0.86)]
    return [
        line(DARK, 0.06, tail),
        fill(ACCENT, [(-0.1, 0.74), (0.14, 0.64), (0.12, 0.82)]),  # a bow on the tail
        fill(MAIN, [(0, -1.0), (0.58, -0.35), (0, 0.55), (-0.58, -0.35)]),
        fill(ACCENT, [(0, -1.0), (0.58, -0.35), (0, -0.35)]),
        fill(ACCENT, [(0, -0.35), (-0.58, -0.35), (0, 0.55)]),
    ]


def _anchor():
    return [
        line(MAIN, 0.1, circle(0, -0.8, 0.17, 14).tolist() + [(0.17, -0.8)]),
        fill(MAIN, rect(-0.09, -0.63, 0.09, 0.9)),
        fill(MAIN, rect(-0.48, -0.48, 0.48, -0.33)),
        line(MAIN, 0.16, ellipse(0, 0.2, 0.78, 0.72, 15, 165, 14)),
        fill(MAIN, [(-0.98, 0.2), (-0.55, 0.28), (-0.8, 0.55)]),  # flukes
        fill(MAIN, [(0.98, 0.2), (0.55, 0.28), (0.8, 0.55)]),
    ]


def _crown():
    points = [(-0.9, 0.3), (-0.95, -0.55), (-0.45, -0.05), (0.0, -0.72), (0.45, -0.05), (0.95, -0.55), (0.9, 0.3)]
    gems = [(-0.95, -0.6, 0.12), (0.0, -0.78, 0.12), (0.95, -0.6, 0.12), (-0.45, 0.45, 0.1), (0, 0.45, 0.1),
            (0.45, 0.45, 0.1)]  # fmt: skip
    return [fill(MAIN, points), fill(DARK, rect(-0.9, 0.25, 0.9, 0.65)), *(fill(ACCENT, circle(*g, 12)) for g in gems)]


def _leaf():
    t = np.linspace(0, 1, 14)
    x = -0.75 + 1.6 * t
    w = 0.52 * np.sin(np.pi * t) ** 0.9
    blade = np.concatenate([np.stack([x, -w], 1), np.stack([x[::-1], w[::-1]], 1)])
    veins = [line(DARK, 0.05, [(x0, 0.0), (x0 + 0.28, s * 0.3)]) for x0 in (-0.4, -0.05, 0.3) for s in (-1, 1)]
    return [fill(MAIN, blade), line(DARK, 0.07, [(-1.0, 0.05), (-0.75, 0.0), (0.75, 0.0)]), *veins]


def _ladder():
    rails = [line(MAIN, 0.13, [(x, -1.0), (x, 1.0)]) for x in (-0.45, 0.45)]
    return rails + [line(MAIN, 0.11, [(-0.45, y), (0.45, y)]) for y in (-0.72, -0.36, 0.0, 0.36, 0.72)]


# name -> (how far it may be rotated either way in degrees, primitives); the order fixes the category ids
ICONS: dict[str, tuple[int, list[Primitive]]] = {
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
CATEGORIES: tuple[str, ...] = tuple(ICONS)
