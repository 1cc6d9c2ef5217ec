"""Decoding an image file to the 8-bit RGB a viewer shows, by rules rather than by whatever ``convert("RGB")`` does.

``Image.open(file).convert("RGB")`` alone reads a 16-bit grayscale PNG as solid white, a float TIFF as solid black,
a phone photo sideways and a transparent area as black. :func:`decode_rgb` applies, in this order:

1. EXIF orientation, so the image stands as a viewer shows it.
2. High bit depths scaled to 8 bits by their type's range (see :func:`_integer_to_8bit` and :func:`_float_to_8bit`);
   a float image outside [0, 1] has no agreed mapping and is refused with :class:`UninterpretableImage`.
3. Alpha composited on white: white is what viewers show under the transparent parts of documents and photos, and
   what CLIP preprocessing of web images commonly does; black would turn a logo on a transparent background into a
   dark image the model never saw in pre-training.
4. Everything else (CMYK, 1-bit, palette, YCbCr, ...) through PIL's ``convert("RGB")``.

Images above PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) are decoded with one warning per file that
names it; above twice the limit they are refused with :class:`PIL.Image.DecompressionBombError`.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

# Bits per sample declared by the raw mode PIL's decoder unpacks a mode-I image from (``I;16B`` in a 16-bit PNG).
_RAW_BITS = re.compile(r"^I;(\d+)")
_ORIENTATION = 0x0112  # the EXIF tag
_PREMULTIPLIED = ("RGBa", "La")
_ALPHA = ("RGBA", "LA", "PA", *_PREMULTIPLIED)

# Files already warned about as oversized: the warning is said once per file and process, not once per epoch.
_WARNED: set[str] = set()
# Serializes warnings.catch_warnings (process-wide state) around Image.open and guards _WARNED.
_LOCK = threading.Lock()


class UninterpretableImage(ValueError):
    """An image that decodes but whose values have no agreed mapping to 8-bit RGB (a float image outside [0, 1], an
    integer image with negative values)."""


def decode_rgb(file: str | Path | IO[bytes]) -> Image.Image:
    """The image in ``file`` (a path or an open binary file), fully decoded, upright and as 8-bit RGB.

    Raises:
        OSError, ValueError, SyntaxError: the file is missing, truncated, corrupt or of no known format.
        UninterpretableImage: its values have no mapping to 8 bits (a ``ValueError``).
        PIL.Image.DecompressionBombError: it has more than twice ``Image.MAX_IMAGE_PIXELS`` pixels.
    """
    try:
        with _open(file) as opened:
            declared = _declared_bits(opened)  # the decoder's tiles are gone after load()
            opened.load()
            _warn_if_large(file, opened.size)
            return _to_rgb(_upright(opened), declared)
    except Image.DecompressionBombError as err:
        raise Image.DecompressionBombError(_bomb_text(err)) from err


def _to_rgb(img: Image.Image, declared: int | None) -> Image.Image:
    """A loaded, upright image as 8-bit RGB, by the rules of the module docstring."""
    if img.mode == "F":
        return _gray_to_rgb(_float_to_8bit(img))
    if img.mode == "I" or img.mode.startswith("I;16"):
        return _gray_to_rgb(_integer_to_8bit(img, declared))
    if _has_alpha(img):
        return _on_white(img)
    return img.convert("RGB")


def _open(file: str | Path | IO[bytes]) -> Image.Image:
    """``Image.open(file)`` without PIL's generic decompression-bomb warning (:func:`_warn_if_large` says its own).

    ``catch_warnings`` swaps process-wide state, so it is held under a lock (opening reads only the header: the lock
    costs nothing), and warnings other threads raised meanwhile are passed on."""
    with _LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = Image.open(file)
    for w in caught:
        if not issubclass(w.category, Image.DecompressionBombWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return img


def _declared_bits(img: Image.Image) -> int | None:
    """Bits per sample the file declares for a mode-I image, as the raw mode of PIL's decoder says (``I;16B`` for a
    16-bit PNG, ``I;32S`` for a 32-bit TIFF, ``I`` for 32 bits); ``None`` when PIL does not say."""
    if img.mode != "I":
        return None
    for tile in img.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else next(iter(args or ()), None)
        if rawmode == "I":
            return 32
        if isinstance(rawmode, str) and (match := _RAW_BITS.match(rawmode)):
            return int(match.group(1))
    return None


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says (a phone photo stands as a viewer shows it)."""
    try:
        orientation = img.getexif().get(_ORIENTATION)
    except (OSError, ValueError, SyntaxError):
        return img  # a broken EXIF block should not cost a readable image its pixels
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(img)
    return img


def _integer_to_8bit(img: Image.Image, declared: int | None) -> np.ndarray:
    """An integer grayscale image (mode ``I;16*`` or ``I``) scaled to 8 bits by its type's range: ``v * 255 / top``
    rounded, with ``top`` the largest value of the type.

    The type: ``I;16*`` modes are 16-bit (``top`` 65535). Mode ``I`` holds any integer image (PIL opens a 16-bit PNG
    as ``I`` or ``I;16`` depending on its version), so the depth the file declares decides where PIL tells it
    (:func:`_declared_bits`): 16 bits gives 65535, 32 bits gives 2**31 - 1 (the largest value mode ``I`` holds). Where
    PIL does not tell, the values decide: all within [0, 65535] is taken as 16-bit data (how 16-bit data reaches mode
    ``I``; a 32-bit reading would make it black), larger ones as 32-bit. Negative values (signed data) have no agreed
    mapping to 0-255: :class:`UninterpretableImage`. A transparent gray value (a PNG's ``tRNS``) becomes white, as
    alpha does elsewhere.
    """
    values = np.asarray(img).astype(np.int64)
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if lo < 0:
        raise UninterpretableImage(f"integer image (mode {img.mode}) with negative values, in [{lo}, {hi}]")
    if img.mode.startswith("I;16"):
        bits = 16
    else:
        bits = declared if declared is not None else (16 if hi <= 65535 else 32)
    top = 2 ** min(bits, 31) - 1
    gray = _round_to_8bit(np.minimum(values, top) * (255 / top))
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        gray[values == transparent] = 255
    return gray


def _float_to_8bit(img: Image.Image) -> np.ndarray:
    """A float image (mode ``F``) with values in [0, 1] scaled to 8 bits: ``v * 255`` rounded. Other values (HDR
    radiance, depth in metres, normalized data) or non-finite ones cannot be read without knowing the convention
    that made them: :class:`UninterpretableImage`, naming the range found."""
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise UninterpretableImage(f"float image (mode {img.mode}) with non-finite values (NaN or infinity)")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise UninterpretableImage(f"float image (mode {img.mode}) with values in [{lo:.4g}, {hi:.4g}], outside [0, 1]")
    return _round_to_8bit(values * 255)


def _round_to_8bit(values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 255] rounded half up (the usual rounding of pixel values; numpy's rint rounds to even)."""
    return np.floor(values + 0.5).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    """An 8-bit grayscale array as an RGB image, the channel repeated."""
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))


def _has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` has transparent parts: an alpha band, or a transparent color or palette entries."""
    if img.mode in _ALPHA:
        return True
    if img.mode in ("P", "L", "RGB") and "transparency" in img.info:
        return True
    return img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA"


def _on_white(img: Image.Image) -> Image.Image:
    """``img`` composited on white, as RGB."""
    if img.mode in _PREMULTIPLIED:
        # Color already multiplied by alpha: over white it is color + (255 - alpha), exact and without PIL (which
        # cannot convert La).
        values = np.asarray(img).astype(np.int32)
        color, alpha = values[..., :-1], values[..., -1:]
        out = np.clip(color + 255 - alpha, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(out, 3, axis=2) if out.shape[-1] == 1 else out)
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")


def _warn_if_large(file: str | Path | IO[bytes], size: tuple[int, int]) -> None:
    """One warning per file (and process) for an image above ``Image.MAX_IMAGE_PIXELS``, naming the file: PIL's own
    names neither file nor size in pixels, and comes again every epoch."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = max(1, size[0]) * max(1, size[1])  # as PIL counts them
    if limit is None or pixels <= limit:
        return
    name = _name(file)
    with _LOCK:
        if name in _WARNED:
            return
        _WARNED.add(name)
    warnings.warn(
        f"{name}: {size[0]}x{size[1]} image ({pixels:,} pixels) is larger than PIL's decompression-bomb limit "
        f"Image.MAX_IMAGE_PIXELS={limit:,}; it is decoded all the same (refused above twice the limit)",
        Image.DecompressionBombWarning,
        stacklevel=4,  # the caller of read_rgb
    )


def _name(file: str | Path | IO[bytes]) -> str:
    """The name of ``file`` for a message: its path, the name of an open file, else a digest of the bytes of an
    in-memory one (a shard record)."""
    if isinstance(file, (str, os.PathLike)):
        return os.fspath(file)
    name = getattr(file, "name", None)
    if isinstance(name, str):
        return name
    position = file.tell()
    file.seek(0)
    digest = hashlib.sha1(file.read()).hexdigest()[:12]
    file.seek(position)
    return f"in-memory image sha1:{digest}"


def _bomb_text(err: Image.DecompressionBombError) -> str:
    """The reason an image over twice the limit is refused, naming its size (PIL's message holds it)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    if found is None or Image.MAX_IMAGE_PIXELS is None:
        return str(err)
    return (
        f"image of {int(found.group(1)):,} pixels, more than twice PIL's limit "
        f"Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS:,}"
    )
