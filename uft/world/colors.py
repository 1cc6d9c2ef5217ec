"""The world's colours: the colour words of attributes and captions, the sketch inks, the tones that icons are drawn
in, and the palette that turns tones into RGB for one drawing."""

from __future__ import annotations

import numpy as np

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
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
COLOR_RGB = np.array([COLORS[n] for n in COLOR_NAMES], np.float32)
INKS: dict[str, tuple[int, int, int]] = {  # a sketch has no object colour: its colour word names the ink
    "black": (25, 25, 30),
    "gray": (90, 90, 95),
    "blue": (30, 45, 125),
    "brown": (85, 55, 30),
}

# tones: label values in the label map (0 is background; CUT punches a hole back to background)
CUT, MAIN, DARK, LIGHT, GREEN, BROWN, ACCENT = 0, 1, 2, 3, 4, 5, 6
_NATURAL = np.array([(60, 145, 55), (115, 72, 38)], np.float32)  # the GREEN and BROWN tones, whatever the object's


def palette(main: np.ndarray, color_index: int, accent_draw: float) -> np.ndarray:
    """RGB rows (7, 3) indexed by tone for one drawing.

    Args:
        main: the object's colour, ``COLOR_RGB[color_index]`` jittered.
        color_index: index of its colour word in ``COLOR_NAMES``; sets how dark or light its shades are.
        accent_draw: uniform draw in [0, 1) that picks the ACCENT colour word among the other ones.
    """
    r, g, b = COLORS[COLOR_NAMES[color_index]]
    lum = (0.299 * r + 0.587 * g + 0.114 * b) / 255
    n = len(COLOR_NAMES)
    return np.stack([
        main,  # background slot: unused
        main,
        main * 0.45 if lum > 0.3 else main * 0.5 + 75,
        main * 0.35 + 165 if lum < 0.7 else main * 0.6,
        _NATURAL[0],
        _NATURAL[1],
        COLOR_RGB[(color_index + 1 + int(accent_draw * (n - 1))) % n],
    ])  # fmt: skip
