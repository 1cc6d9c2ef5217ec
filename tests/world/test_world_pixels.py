"""The world's pixels are pinned: refactoring the renderer must not move a single pixel.

Each case renders every category twice from generators seeded per category (as the benchmark recipe seeds
them), in one style, optionally corrupted by the benchmark's default shift (fog at 0.7), and hashes the uint8 pixel
bytes. Drawing several images from one generator also pins the order and number of random draws. The hashes come
from the renderer as it was before it was split into modules; change them only for a change meant to alter the
pictures (print the new ones with ``python -m tests.world.test_world_pixels``), and say so: the shipped checkpoint's
record and every rendered benchmark folder depend on these pixels.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from uft.world import CATEGORIES, apply_shift, render

# (style, shift, image side) -> sha256 of the pixels of every category, two images each
PIXELS = {
    ("photo", "none", 48): "9e2cd7b3d6065a671247a4a32dc7c39d45e670bda183e50f8ca83b00f5ffdf87",
    ("photo", "fog", 48): "37d272d13db1af77a18f70dfe89036cdd25abe9c8c09835434aad7fde61609ae",
    ("clipart", "none", 48): "331c348ea26cce0da00370c7e077836c8b703e0984509c776937d739efb5a298",
    ("clipart", "fog", 48): "8288b6ad4c950a829f81d1dbc84ca1538a98635bd2b29d34c58a1d9c10084be0",
    ("painting", "none", 48): "a6b7e0c012402c2f60a40d8356e0c20212227d60d225bee7894b9f6833e6233f",
    ("painting", "fog", 48): "4ce0eae6999d5c81a6976e51896f30e1abf02f0d3187817f71e6e69cf20632fc",
    ("sketch", "none", 48): "756fd8bb1d84bb9af3414a2d0362d07f2d9387adcb407751105210230fe4f340",
    ("sketch", "fog", 48): "0b16faf3803948c6647c9c7b8137594c2da8a56dc658c05779936213bfd95c6e",
    # texture banks are built per image side
    ("photo", "none", 32): "193b20dbf39dccadb55e78b371a8f45c0c2f775790316848e889204d98814f9d",
    ("painting", "fog", 64): "4cd79538354eb3cf44823e4529bf496e02f058c7c02a5816ebf4d4d0357c2b07",
}


def pixels_sha256(style: str, shift: str, size: int, seed: int = 0) -> str:
    digest = hashlib.sha256()
    for label in range(len(CATEGORIES)):
        rng = np.random.default_rng([seed, label])
        for _ in range(2):
            image, _ = render(label, style, rng, size)
            if shift != "none":
                image = apply_shift(image, shift, 0.7, rng)
            digest.update(np.asarray(image, np.uint8).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("case", list(PIXELS), ids=["-".join(map(str, case)) for case in PIXELS])
def test_pixels_are_unchanged(case):
    assert pixels_sha256(*case) == PIXELS[case]


if __name__ == "__main__":
    for case in PIXELS:
        print(f"    {case}: {pixels_sha256(*case)!r},")
