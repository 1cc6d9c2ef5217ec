"""Tests of the procedural image world: rendering, captions, shifts and pair sampling."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from uft.world import CATEGORIES, SHIFTS, STYLES, apply_shift, caption, render, sample_pair
from uft.world.render import COLORS, INKS, POSITIONS


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, np.float32)


def test_vocabulary():
    assert len(CATEGORIES) >= 24 and len(set(CATEGORIES)) == len(CATEGORIES)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in CATEGORIES)
    assert STYLES == ("photo", "clipart", "painting", "sketch")
    assert SHIFTS == ("fog", "contrast", "noise", "blur")


@pytest.mark.parametrize("style", STYLES)
def test_render_is_deterministic(style):
    def draw(seed):
        rng = np.random.default_rng(seed)
        out = []
        for category in (0, 7, len(CATEGORIES) - 1):
            image, attributes = render(category, style, rng)
            out.append((image.tobytes(), attributes, caption(category, style, attributes, rng)))
        return out

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_every_category_renders_in_every_style():
    rng = np.random.default_rng(0)
    for category, style in itertools.product(range(len(CATEGORIES)), STYLES):
        image, attributes = render(category, style, rng)
        assert image.mode == "RGB" and image.size == (48, 48)
        assert _pixels(image).std() > 10, (CATEGORIES[category], style)  # not blank
        assert attributes["color"] in (INKS if style == "sketch" else COLORS)
        assert attributes["size"] in ("small", "large")
        assert attributes["position"] in POSITIONS


@pytest.mark.parametrize("size", [32, 64])
def test_other_sizes(size):
    image, _ = render(3, "photo", np.random.default_rng(0), size=size)
    assert image.size == (size, size)


def test_position_and_size_describe_the_drawing():
    """Where the object's pixels lie agrees with the attributes (sketch: the ink is darker than the paper)."""
    rng = np.random.default_rng(1)
    seen = Counter()
    for i in range(300):
        image, attributes = render(i % len(CATEGORIES), "sketch", rng)
        ys, xs = np.nonzero(_pixels(image).mean(-1) < 160)
        cx, cy = (xs.min() + xs.max()) / 94 - 0.5, (ys.min() + ys.max()) / 94 - 0.5  # bounding box centre
        extent = max(np.ptp(xs), np.ptp(ys)) / 48
        position = attributes["position"]
        seen[position, attributes["size"]] += 1
        assert (extent > 0.61) == (attributes["size"] == "large"), (i, extent, attributes)
        if position == "left":
            assert cx < -0.08
        elif position == "right":
            assert cx > 0.08
        elif position == "top":
            assert cy < -0.08
        elif position == "bottom":
            assert cy > 0.08
        else:
            assert abs(cx) < 0.08 and abs(cy) < 0.08
    assert len(seen) == 6  # every position among the small objects, large ones centred


@pytest.mark.parametrize("style", STYLES)
def test_categories_differ(style):
    # the same seed gives every category the same pose, colours and background: only the shape differs
    images = [_pixels(render(c, style, np.random.default_rng(7))[0]) for c in range(len(CATEGORIES))]
    for (i, a), (j, b) in itertools.combinations(enumerate(images), 2):
        assert np.abs(a - b).mean() > 1.0, (CATEGORIES[i], CATEGORIES[j])


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="style"):
        render(0, "cartoon", rng)
    with pytest.raises(ValueError, match="category"):
        render(len(CATEGORIES), "photo", rng)
    with pytest.raises(ValueError, match="shift"):
        apply_shift(Image.new("RGB", (8, 8)), "rain", 0.5, rng)


# ---------------------------------------------------------------------------------------------------- captions
def test_captions():
    rng = np.random.default_rng(0)
    styled = Counter()
    for i in range(2000):
        category, style = i % len(CATEGORIES), STYLES[(i // len(CATEGORIES)) % len(STYLES)]
        if i < 200:
            _, attributes = render(category, style, rng, size=16)  # real attributes, then random ones (faster)
        else:
            colour = rng.choice(list(INKS if style == "sketch" else COLORS))
            attributes = {"color": colour, "size": rng.choice(["small", "large"]), "position": rng.choice(POSITIONS)}
        text = caption(category, style, attributes, rng)
        assert CATEGORIES[category].replace("_", " ") in text
        assert text == text.strip() and "  " not in text and "_" not in text
        for article, word in re.findall(r"\b(a|an) (\w+)", text):
            assert article == ("an" if word[0] in "aeiou" else "a"), text
        if style == "sketch":
            assert not any(f" {c} " in f" {text} " for c in COLORS if c not in CATEGORIES)
        styled[style in text] += 1
    assert 0.65 < styled[True] / 2000 < 0.95  # the style word often, not always


def test_caption_mentions_attributes_sometimes():
    rng = np.random.default_rng(0)
    attributes = {"color": "orange", "size": "small", "position": "left"}
    texts = [caption(CATEGORIES.index("umbrella"), "photo", attributes, rng) for _ in range(300)]
    assert any("an orange umbrella" in t for t in texts)
    assert any("an umbrella" in t for t in texts)
    assert any("small" in t for t in texts) and any("on the left" in t for t in texts)
    assert any("orange" not in t for t in texts)


# ---------------------------------------------------------------------------------------------------- shifts
@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(5)
    return [render(i, "photo", rng)[0] for i in range(8)]


@pytest.mark.parametrize("shift", SHIFTS)
def test_shift_severity(shift, photos):
    rng = np.random.default_rng(0)
    for image in photos:
        assert apply_shift(image, shift, 0.0, rng).tobytes() == image.tobytes()
        shifted = apply_shift(image, shift, 1.0, rng)
        assert shifted.mode == "RGB" and shifted.size == image.size
        assert np.abs(_pixels(shifted) - _pixels(image)).mean() > 3, shift


def test_shift_is_deterministic(photos):
    for shift in SHIFTS:
        a = apply_shift(photos[0], shift, 0.7, np.random.default_rng(1))
        b = apply_shift(photos[0], shift, 0.7, np.random.default_rng(1))
        assert a.tobytes() == b.tobytes()


def test_shift_effects(photos):
    rng = np.random.default_rng(0)
    for image in photos:
        x = _pixels(image)
        fog = _pixels(apply_shift(image, "fog", 0.8, rng))
        assert abs(fog.mean() - 200) < abs(x.mean() - 200) + 1  # pulled towards the fog's grey (200)
        assert fog.std() < x.std()
        assert _pixels(apply_shift(image, "contrast", 0.8, rng)).std() < 0.5 * x.std()
        noisy = _pixels(apply_shift(image, "noise", 0.8, rng))
        assert 20 < np.abs(noisy - x).mean() < 50
        blurred = _pixels(apply_shift(image, "blur", 0.8, rng))
        assert np.abs(np.diff(blurred, axis=1)).mean() < 0.7 * np.abs(np.diff(x, axis=1)).mean()


# ---------------------------------------------------------------------------------------------------- pairs
def test_sample_pair():
    rng = np.random.default_rng(0)
    seen = Counter()
    for _ in range(400):
        image, category, style, text = sample_pair(rng, ("photo", "sketch"), size=24)
        assert image.size == (24, 24) and style in ("photo", "sketch")
        assert CATEGORIES[category].replace("_", " ") in text
        seen[style] += 1
    assert seen["photo"] > 150 and seen["sketch"] > 150


def test_sample_pair_weights():
    rng = np.random.default_rng(0)
    styles = [sample_pair(rng, STYLES, 16, (3.0, 1.0, 0.0, 0.0))[2] for _ in range(400)]
    counts = Counter(styles)
    assert set(counts) == {"photo", "clipart"}
    assert 0.65 < counts["photo"] / 400 < 0.85
    for bad in ((1.0, 1.0), (0.0, 0.0, 0.0, 0.0), (1.0, -1.0, 1.0, 1.0)):
        with pytest.raises(ValueError):
            sample_pair(rng, STYLES, 16, bad)


def test_sample_pair_is_deterministic():
    def draw():
        rng = np.random.default_rng(11)
        return [(im.tobytes(), c, s, t) for im, c, s, t in (sample_pair(rng, STYLES) for _ in range(20))]

    assert draw() == draw()
