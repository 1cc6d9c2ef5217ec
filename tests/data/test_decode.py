"""Images decode as a viewer shows them: 16-bit and float images scaled by their range, EXIF orientation applied,
transparency on white, oversized images warned about once and refused above twice PIL's limit; read from a path and
from in-memory bytes (shards) alike, and ``unreadable_reason`` agrees with ``read_rgb`` on every one."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uft.data import decode
from uft.data.skipped import UNREADABLE, read_rgb, unreadable_reason
from uft.errors import first_line

GRADIENT_16 = np.array([[0, 1000, 32768, 65535], [65535, 32768, 1000, 0]], dtype=np.uint16)
SOURCES = ["path", "bytes"]


def _source(path: Path, source: str) -> Path | io.BytesIO:
    """``path`` itself, or its bytes in memory as a shard hands them over."""
    return path if source == "path" else io.BytesIO(path.read_bytes())


def _rgb(path: Path, source: str = "path") -> np.ndarray:
    img = read_rgb(_source(path, source))
    assert img.mode == "RGB"
    return np.asarray(img)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """The one channel of a gray RGB image (checking the three are equal)."""
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all()
    return rgb[..., 0]


def _save(array: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def _refusal(path: Path, source: str = "path") -> str:
    """The reason ``read_rgb`` gives for refusing ``path``, formatted as ``unreadable_reason`` formats it."""
    with pytest.raises(UNREADABLE) as info:
        read_rgb(_source(path, source))
    return f"{type(info.value).__name__}: {first_line(info.value, 120)}"


# Each case: a file of one kind, made in a folder, and the reason it is refused (None: it decodes).
def _png16(folder: Path) -> Path:
    return _save(GRADIENT_16, folder / "gray16.png")


def _tiff16(folder: Path) -> Path:
    return _save(GRADIENT_16, folder / "gray16.tif")


def _float_in_range(folder: Path) -> Path:
    return _save(np.array([[0.0, 0.1, 0.5, 1.0]], dtype=np.float32), folder / "float.tif")


def _float_out_of_range(folder: Path) -> Path:
    return _save(np.array([[-3.2, 0.5, 840.0]], dtype=np.float32), folder / "float_hdr.tif")


def _float_nan(folder: Path) -> Path:
    return _save(np.array([[0.2, np.nan, 0.5]], dtype=np.float32), folder / "float_nan.tif")


def _int32_negative(folder: Path) -> Path:
    return _save(np.array([[0, -5, 70000]], dtype=np.int32), folder / "int32.tif")


def _rotated(folder: Path) -> Path:
    """A 40x20 photo stored sideways (EXIF orientation 6: turn 90 degrees clockwise to view), its stored top-left
    corner red."""
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(folder / "rotated.jpg", exif=exif, quality=95)
    return folder / "rotated.jpg"


def _rgba(folder: Path) -> Path:
    array = np.zeros((2, 3, 4), dtype=np.uint8)
    array[:, 0] = (10, 20, 30, 0)  # transparent
    array[:, 1] = (200, 100, 50, 255)  # opaque
    array[:, 2] = (0, 0, 0, 128)  # half
    return _save(array, folder / "rgba.png")


def _la(folder: Path) -> Path:
    return _save(np.array([[[0, 0], [77, 255]]], dtype=np.uint8), folder / "la.png")


def _palette_transparent(folder: Path) -> Path:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0])
    img.putpixel((1, 0), 1)
    img.save(folder / "palette.png", transparency=1)
    return folder / "palette.png"


def _truncated(folder: Path) -> Path:
    path = _save(np.full((32, 32, 3), 90, dtype=np.uint8), folder / "truncated.png")
    path.write_bytes(path.read_bytes()[:60])
    return path


CASES = {
    "png16": (_png16, None),
    "tiff16": (_tiff16, None),
    "float_in_range": (_float_in_range, None),
    "float_out_of_range": (
        _float_out_of_range,
        "UninterpretableImage: float image (mode F) with values in [-3.2, 840], outside [0, 1]",
    ),
    "float_nan": (_float_nan, "UninterpretableImage: float image (mode F) with non-finite values (NaN or infinity)"),
    "int32_negative": (
        _int32_negative,
        "UninterpretableImage: integer image (mode I) with negative values, in [-5, 70000]",
    ),
    "rotated": (_rotated, None),
    "rgba": (_rgba, None),
    "la": (_la, None),
    "palette_transparent": (_palette_transparent, None),
    "truncated": (_truncated, "OSError"),
}


@pytest.mark.parametrize("source", SOURCES)
def test_16bit_png_and_tiff_scale_by_the_16bit_range(tmp_path, source):
    expected = np.vectorize(lambda v: round(v * 255 / 65535))(GRADIENT_16)
    for path in (_png16(tmp_path), _tiff16(tmp_path)):
        assert (_gray(_rgb(path, source)) == expected).all(), path.name
    dark = _save(np.full((3, 3), 1000, dtype=np.uint16), tmp_path / "dark16.png")
    assert (_rgb(dark, source) == 4).all()  # the old convert("RGB") gave 255 everywhere


def test_mode_I_takes_its_depth_from_the_file_else_from_the_values(tmp_path):
    top32 = _save(np.array([[0, 2**30, 2**31 - 1]], dtype=np.int32), tmp_path / "int32.tif")
    assert _gray(_rgb(top32)).tolist() == [[0, 128, 255]]  # declared 32 bits
    sixteen = Image.fromarray(GRADIENT_16.astype(np.int32))  # mode I, nothing declared: 16-bit values
    assert sixteen.mode == "I"
    expected = np.vectorize(lambda v: round(v * 255 / 65535))(GRADIENT_16)
    assert (_gray(np.asarray(decode._to_rgb(sixteen, None))) == expected).all()
    assert (_gray(np.asarray(decode._to_rgb(sixteen, 16))) == expected).all()
    wide = Image.fromarray(np.array([[0, 70000, 2**31 - 1]], dtype=np.int32))
    assert _gray(np.asarray(decode._to_rgb(wide, None))).tolist() == [[0, 0, 255]]


@pytest.mark.parametrize("source", SOURCES)
def test_float_images_in_0_1_scale_by_255_others_are_refused(tmp_path, source):
    assert _gray(_rgb(_float_in_range(tmp_path), source)).tolist() == [[0, 26, 128, 255]]
    for case in ("float_out_of_range", "float_nan", "int32_negative"):
        make, reason = CASES[case]
        assert _refusal(make(tmp_path), source) == reason


@pytest.mark.parametrize("source", SOURCES)
def test_exif_orientation_turns_the_image_as_a_viewer_shows_it(tmp_path, source):
    rgb = _rgb(_rotated(tmp_path), source)
    assert rgb.shape == (40, 20, 3)  # 20 wide, 40 high
    # Turned clockwise, the stored top-left corner is the top-right one.
    assert np.abs(rgb[2, 17].astype(int) - (255, 0, 0)).max() < 40
    assert np.abs(rgb[2, 2].astype(int) - (0, 0, 255)).max() < 40
    assert np.abs(rgb[37, 17].astype(int) - (0, 0, 255)).max() < 40


@pytest.mark.parametrize("source", SOURCES)
def test_transparency_is_white(tmp_path, source):
    rgba = _rgb(_rgba(tmp_path), source)
    assert (rgba[:, 0] == 255).all()  # transparent: white, whatever color it holds
    assert (rgba[:, 1] == (200, 100, 50)).all()  # opaque: unchanged
    assert (rgba[:, 2] == 127).all()  # black at half alpha over white
    assert _gray(_rgb(_la(tmp_path), source)).tolist() == [[255, 77]]
    assert _rgb(_palette_transparent(tmp_path), source).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_premultiplied_alpha_is_white_too():
    la = Image.frombytes("La", (2, 1), bytes([0, 0, 40, 128]))  # transparent; gray 80 premultiplied at half alpha
    assert _gray(np.asarray(decode._to_rgb(la, None))).tolist() == [[255, 167]]
    rgba = Image.frombytes("RGBa", (1, 1), bytes([100, 50, 0, 128]))
    assert np.asarray(decode._to_rgb(rgba, None)).tolist() == [[[227, 177, 127]]]


@pytest.mark.parametrize("source", SOURCES)
def test_an_oversized_image_warns_once_naming_it_and_twice_the_limit_is_refused(tmp_path, monkeypatch, source):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(decode, "_WARNED", set())
    large = _save(np.full((40, 40, 3), 60, dtype=np.uint8), tmp_path / "large.png")  # 1,600 pixels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert (_rgb(large, source) == 60).all()
        assert unreadable_reason(_source(large, source)) is None
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert issubclass(caught[0].category, Image.DecompressionBombWarning)
    message = str(caught[0].message)
    assert "40x40 image (1,600 pixels)" in message
    assert (str(large) if source == "path" else "in-memory image sha1:") in message

    bomb = _save(np.zeros((50, 50), dtype=np.uint8), tmp_path / "bomb.png")  # 2,500 pixels
    reason = "DecompressionBombError: image of 2,500 pixels, more than twice PIL's limit Image.MAX_IMAGE_PIXELS=1,000"
    assert _refusal(bomb, source) == reason
    assert unreadable_reason(_source(bomb, source)) == reason


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("RGB", "png"), ("RGB", "jpg"), ("L", "png"), ("L", "jpg"), ("CMYK", "jpg"), ("1", "png"), ("P", "png")],
)
def test_plain_images_decode_as_convert_rgb_does(tmp_path, source, mode, suffix):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"plain.{suffix}"
    img.save(path)
    with Image.open(path) as opened:
        assert opened.mode == mode
        expected = np.asarray(opened.convert("RGB"))
    assert (_rgb(path, source) == expected).all()


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_reason_agrees_with_read_rgb(tmp_path, source, case):
    make, reason = CASES[case]
    path = make(tmp_path)
    if reason is None:
        _rgb(path, source)
        assert unreadable_reason(_source(path, source)) is None
    else:
        refusal = _refusal(path, source)
        assert refusal.startswith(reason)
        assert unreadable_reason(_source(path, source)) == refusal
