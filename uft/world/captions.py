"""Captions for rendered images: varied phrasings that always name the category and often the style."""

from __future__ import annotations

import numpy as np

from uft.world.shapes import CATEGORIES

# "{}" is the object phrase, which brings its own article
_STYLED = {
    "photo": (
        "a photo of {}",
        "a photograph of {}",
        "a close-up photo of {}",
        "a photo showing {}",
        "a good photo of {}",
    ),
    "clipart": (
        "a clipart of {}",
        "clipart of {}",
        "a clipart image of {}",
        "{} in clipart style",
        "a clipart icon of {}",
    ),
    "painting": (
        "a painting of {}",
        "an oil painting of {}",
        "a painting showing {}",
        "{}, a painting",
        "a painting depicting {}",
    ),
    "sketch": (
        "a sketch of {}",
        "a pencil sketch of {}",
        "a rough sketch of {}",
        "{}, a sketch",
        "a quick sketch of {}",
    ),
}
_PLAIN = ("{}", "an image of {}", "a picture of {}", "there is {} in the image", "{} in the picture")
_WHERE = {
    "left": ("on the left",),
    "right": ("on the right",),
    "center": ("in the center", "in the middle"),
    "top": ("at the top",),
    "bottom": ("at the bottom",),
}


def article(word: str) -> str:
    """'a' or 'an' for the word that follows (the vocabulary here has no silent h or 'you'-sounding u)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def caption(category: int, style: str, attributes: dict, rng: np.random.Generator) -> str:
    """A caption for an image of ``CATEGORIES[category]`` in ``style`` with ``attributes`` from ``render``.

    The category always appears (underscores as spaces); the style word in about 80% of captions; the colour (not
    for sketches, whose colour is only the ink), size and position now and then.
    """
    words = [CATEGORIES[category].replace("_", " ")]
    if style != "sketch" and rng.random() < 0.5:
        words.insert(0, attributes["color"])
    if rng.random() < 0.3:
        words.insert(0, attributes["size"])
    obj = " ".join(words)
    obj = f"{article(obj)} {obj}"
    if rng.random() < 0.25:
        where = _WHERE[attributes["position"]]
        obj += " " + where[int(rng.integers(len(where)))]
    templates = _STYLED[style] if rng.random() < 0.8 else _PLAIN
    return templates[int(rng.integers(len(templates)))].format(obj)
