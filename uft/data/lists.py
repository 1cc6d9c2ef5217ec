"""Reading what the user points the tool at: class-name files, image list files and ImageFolder trees.

Every problem is reported as one :class:`~uft.errors.InputError` naming the file, line or value.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from uft.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
UNLABELED = -1


@dataclass(frozen=True)
class Sample:
    """One image: its path relative to the image directory, and its class id (``UNLABELED`` if unknown)."""

    path: str
    label: int = UNLABELED


def read_class_names(value: list[str] | str) -> tuple[list[str], str]:
    """Class names from a YAML list, or from a text file with one name per line; returns names and their source."""
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise InputError(f"class-name file not found: {value}")
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        source = str(path)
    else:
        names, source = [str(n) for n in value], "class_names"
    if not names:
        raise InputError(f"{source} holds no class names")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{source} repeats class names: {', '.join(duplicated)}")
    lowered = [n.lower() for n in names]
    by_case = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if by_case:
        warnings.warn(
            f"{source}: class names {', '.join(by_case)} differ only by case; CLIP's tokenizer lower-cases text, so "
            "their prompts and text features are the same and the model cannot tell them apart",
            stacklevel=2,
        )
    return names, source


def _normalise(name: str) -> str:
    return name.replace("_", "").replace(" ", "").replace("-", "").lower()


def resolve_domain(root: str | os.PathLike, domain: str | None) -> Path:
    """The image directory ``root/domain``; ``Real World``, ``Real_World`` and ``RealWorld`` all match each other."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image root not found: {root}")
    if not domain:
        return root
    exact = root / domain
    if exact.is_dir():
        return exact
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    matches = [f for f in folders if _normalise(f) == _normalise(domain)]
    if len(matches) != 1:
        raise InputError(f"domain {domain!r} not found under {root}; folders there: {', '.join(folders) or 'none'}")
    return root / matches[0]


def read_list_file(list_file: str | os.PathLike, image_dir: Path, num_classes: int) -> list[Sample]:
    """Parse a list file of ``relative/path.jpg <int label>`` lines (the label may be absent).

    Paths are relative to ``image_dir``; a relative list-file path is looked up as given, then in ``image_dir``.
    """
    path = Path(list_file)
    if not path.is_file() and (image_dir / path).is_file():
        path = image_dir / path
    if not path.is_file():
        raise InputError(f"list file not found: {list_file}")
    samples = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # The path may contain spaces ("Real World/..."): the label, if any, is the last field.
        fields = line.strip().rsplit(None, 1)
        rel, label = (fields[0], fields[1]) if len(fields) == 2 and _is_int(fields[1]) else (line.strip(), None)
        if label is None and Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{path}:{lineno}: cannot parse {line.strip()!r}: expected 'relative/path.jpg <label>'")
        if label is not None:
            label = int(label)
            if not 0 <= label < num_classes:
                raise InputError(f"{path}:{lineno}: label {label} is outside the {num_classes} class names")
        normal = os.path.normpath(rel)
        if os.path.isabs(normal) or normal == os.pardir or normal.startswith(os.pardir + os.sep):
            raise InputError(f"{path}:{lineno}: {rel} lies outside the image folder {image_dir}")
        if not (image_dir / rel).is_file():
            extra = rel.rsplit(None, 1)
            if len(extra) == 2 and _is_int(extra[1]):
                raise InputError(f"{path}:{lineno}: cannot parse {line.strip()!r}: expected one label after the path")
            raise InputError(f"{path}:{lineno}: image not found: {image_dir / rel}")
        samples.append(Sample(rel, UNLABELED if label is None else label))
    if not samples:
        raise InputError(f"list file {path} holds no images")
    return samples


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", text) is not None


SEGMENT = "segment"  # the first word of a comment line that starts a segment: ``# segment NAME``


def segment_line(name: str) -> str:
    """The list-file line that starts the segment ``name`` (a name without spaces): ``# segment NAME``."""
    return f"# {SEGMENT} {name}"


def read_segments(list_file: str | os.PathLike) -> list[tuple[str, int]]:
    """The named segments of a list file (the domains of a continual stream, in stream order): each segment's name
    and the sample index of its first image; ``[]`` for a file without ``# segment NAME`` lines.

    A sample index counts the image lines :func:`read_list_file` keeps (blank lines and comments do not count), so
    the segments index its samples. Other comment lines are ignored. When there are segment lines, every image
    belongs to one: the file must start its images with a segment line, and every segment holds at least one image.

    Raises:
        InputError: the file is missing, or (naming ``file:line``) an image before the first segment line, a segment
            line without a name or with spaces in it, a repeated name, or a segment without images.
    """
    path = Path(list_file)
    if not path.is_file():
        raise InputError(f"list file not found: {list_file}")
    segments: list[tuple[str, int]] = []
    seen: dict[str, int] = {}  # name -> line number of its segment line
    first_image: int | None = None  # line number of the first image line
    index, open_line = 0, 0  # images so far; line number of the last segment line
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            first_image = lineno if first_image is None else first_image
            index += 1
            continue
        words = text[1:].split()
        if not words or words[0] != SEGMENT:
            continue
        # Checked in the order of the lines they name: the first problem in the file is the one reported.
        if first_image is not None and not segments:
            raise InputError(f"{path}:{first_image}: images before the first '# {SEGMENT}' line")
        if segments and segments[-1][1] == index:
            raise InputError(f"{path}:{open_line}: segment {segments[-1][0]!r} holds no images")
        if len(words) == 1:
            raise InputError(f"{path}:{lineno}: a '# {SEGMENT}' line without a name; expected '# {SEGMENT} NAME'")
        name = " ".join(words[1:])
        if len(words) > 2:
            raise InputError(f"{path}:{lineno}: segment name {name!r} holds spaces; expected '# {SEGMENT} NAME'")
        if name in seen:
            raise InputError(f"{path}:{lineno}: segment {name!r} repeats the segment of line {seen[name]}")
        seen[name], open_line = lineno, lineno
        segments.append((name, index))
    if segments and segments[-1][1] == index:
        raise InputError(f"{path}:{open_line}: segment {segments[-1][0]!r} holds no images (the file ends after it)")
    return segments


def segment_of(segments: list[tuple[str, int]], num_samples: int) -> list[tuple[str, range]]:
    """Each segment of :func:`read_segments` with the range of its sample indices, for a list of ``num_samples``
    samples (the last segment runs to its end); ``[]`` for no segments."""
    starts = [start for _, start in segments] + [num_samples]
    if any(a >= b for a, b in zip(starts, starts[1:])):
        raise ValueError(f"segment starts {starts[:-1]} are not increasing below {num_samples} samples")
    return [(name, range(start, end)) for (name, start), end in zip(segments, starts[1:])]


def segments_of_samples(
    list_file: str | os.PathLike, image_dir: Path, num_classes: int, samples: list[Sample]
) -> list[tuple[str, range]]:
    """The segments of a list file (:func:`read_segments`) as ranges of positions in ``samples``, a selection of its
    images in list order (e.g. the target classes, less a held-out share); a segment none of whose images were
    selected is left out. Empty for a file without segments."""
    segments = read_segments(list_file)
    if not segments:
        return []
    listed = read_list_file(list_file, image_dir, num_classes)
    segment_by_path = {listed[i].path: name for name, members in segment_of(segments, len(listed)) for i in members}
    names = [segment_by_path[s.path] for s in samples]
    bounds = [i for i in range(1, len(names)) if names[i] != names[i - 1]]
    return [(names[a], range(a, b)) for a, b in zip([0, *bounds], [*bounds, len(names)])]


def scan_image_folder(image_dir: Path, class_names: list[str]) -> list[Sample]:
    """Images of an ImageFolder tree ``image_dir/<class name>/...``; class ids come from ``class_names`` by name."""
    ids = {_normalise(name): i for i, name in enumerate(class_names)}
    samples = []
    for folder in sorted(p for p in image_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = ids.get(_normalise(folder.name))
        if label is None:
            raise InputError(f"folder {folder} is not one of the {len(class_names)} class names")
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(str(file.relative_to(image_dir)), label))
    if not samples:
        raise InputError(f"no images found under {image_dir}")
    return samples


def holdout_mask(samples: list[Sample], fraction: float, seed: int) -> list[bool]:
    """Deterministic held-out split: a sample is held out iff a hash of its path and the seed falls below
    ``fraction``. It depends on nothing else, so adding images never moves others between splits."""

    def draw(path: str) -> float:
        digest = hashlib.sha1(f"{seed}:{path}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return [draw(s.path) < fraction for s in samples]


def sample_keys(samples: list[Sample]) -> list[int]:
    """One 64-bit key per sample, from its path and label, in list order: two lists with equal keys hold the same
    images in the same order with the same labels (a checkpoint keeps them to refuse another target list)."""
    keys = []
    for sample in samples:
        digest = hashlib.blake2b(f"{sample.path}\t{sample.label}".encode(), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "big", signed=True))
    return keys
