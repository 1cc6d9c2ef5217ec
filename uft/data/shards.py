"""Target images as litdata shards: written once from a list file or an ImageFolder tree, read from a local folder
or an object store (``s3://``, ``gs://``, ``azure://``).

A shard folder holds litdata's chunks and ``index.json`` plus ``uft_samples.tsv``, the sample list: one line per
image with its **global sample index** (its position in the source's sample list, the order the data module reads
a list file or a folder in), the record's position in the shards, its label (``-1`` when unknown) and its path.
Each record holds the same index, label and path and the image file's bytes as they were (nothing is re-encoded, so
a decoded shard image is pixel for pixel the decoded file). Records are stored in a seeded random order, so every
shard holds a mix of classes and a training order that reads shard after shard still mixes them.

The data module reads the sample list first (its splits, protocols and per-sample tables work on it exactly as on a
list file), then each image by path.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from uft.data.lists import UNLABELED, Sample
from uft.data.skipped import read_rgb, unreadable_reason
from uft.errors import InputError

SAMPLES_FILE = "uft_samples.tsv"
INDEX_FILE = "index.json"  # litdata's
HEADER = "index\tposition\tlabel\tpath"
DEFAULT_CHUNK_BYTES = 64 << 20


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URL (``s3://bucket/prefix``) rather than a local folder."""
    return "://" in location and not location.startswith("file://")


@dataclass(frozen=True)
class ShardSummary:
    """What :func:`write_shards` wrote."""

    folder: Path
    count: int
    chunks: int
    size: int  # bytes, chunks and index files together


def write_shards(
    samples: list[Sample], folder: str | Path, out: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES, seed: int = 0
) -> ShardSummary:
    """Write the images of ``samples`` (paths relative to ``folder``) as litdata shards into the new folder ``out``.

    The same samples, files, ``chunk_bytes`` and ``seed`` give byte-identical shards (litdata's ``updated_at`` is
    set to a digest of the content instead of the time, so a changed data set still gets a new cache key). The
    shards are written into a temporary folder beside ``out`` and moved into place when complete: a killed run
    leaves no partial shard folder behind. ``out`` must not exist yet (or be empty).
    """
    from litdata.streaming.writer import BinaryWriter

    out, folder = Path(out), Path(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty: shards go into a new folder")
    if not out.parent.is_dir():
        raise InputError(f"the folder {out.parent} does not exist: create it first, or write the shards elsewhere")
    for sample in samples:
        if "\t" in sample.path or "\n" in sample.path:
            raise InputError(f"image path {sample.path!r} holds a tab or a line break, which the sample list cannot")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(samples), generator=generator).tolist()  # order[position] = sample index
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # a folder as mkdir would make it (mkdtemp's is private)
    try:
        writer = BinaryWriter(str(partial), chunk_bytes=chunk_bytes)
        for position, index in enumerate(order):
            sample = samples[index]
            try:
                image = (folder / sample.path).read_bytes()
            except OSError as err:
                reason = err.strerror or err
                raise InputError(f"cannot read {folder / sample.path}: {reason}; nothing was written") from None
            writer[position] = {"index": index, "label": sample.label, "path": sample.path, "image": image}
        writer.done()
        writer.merge()
        _pin_updated_at(partial)
        position_of = {index: position for position, index in enumerate(order)}
        lines = [HEADER] + [f"{i}\t{position_of[i]}\t{s.label}\t{s.path}" for i, s in enumerate(samples)]
        (partial / SAMPLES_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    files = [p for p in out.iterdir() if p.is_file()]
    chunks = sum(p.name.endswith(".bin") for p in files)
    return ShardSummary(out, len(samples), chunks, sum(p.stat().st_size for p in files))


def _pin_updated_at(folder: Path) -> None:
    """Replace litdata's write time in ``index.json`` by a digest of the chunks (deterministic output)."""
    index_file = folder / INDEX_FILE
    index = json.loads(index_file.read_text())
    digest = hashlib.sha256()
    for chunk in index["chunks"]:
        digest.update((folder / chunk["filename"]).read_bytes())
    index["updated_at"] = str(int.from_bytes(digest.digest()[:6], "big"))  # a number, as litdata writes it
    index_file.write_text(json.dumps(index, sort_keys=True))


class ImageShards:
    """Images stored as litdata shards (an :class:`~uft.data.datasets.ImageSource`), and their sample list.

    Each loader worker opens its own ``litdata.StreamingDataset`` on first use and reads records by position;
    from an object store litdata downloads each chunk once into ``cache_dir`` and reads it from there.

    Args:
        location: the shard folder, or its URL (``s3://bucket/prefix``; credentials as the storage's client reads
            them, e.g. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL`` for S3).
        cache_dir: where chunks of remote shards are kept (default: litdata's).
    """

    def __init__(self, location: str, cache_dir: str | None = None) -> None:
        self.location = location.rstrip("/") if is_remote(location) else str(Path(location.removeprefix("file://")))
        self.cache_dir = cache_dir
        index = json.loads(self._fetch(INDEX_FILE))
        sizes = [chunk["chunk_size"] for chunk in index["chunks"]]
        self._chunk_ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        self.samples, self._positions = self._read_samples(self._fetch(SAMPLES_FILE), self._chunk_ends[-1])
        self._position = {sample.path: position for sample, position in zip(self.samples, self._positions)}
        self._dataset = None

    def _fetch(self, name: str) -> str:
        """The text of one small file of the shard folder (downloaded when remote)."""
        if not is_remote(self.location):
            path = Path(self.location) / name
            if not Path(self.location).is_dir():
                raise InputError(f"data.target_shards: no shard folder at {self.location}")
            if not path.is_file():
                raise InputError(f"{self.location} holds no {name}: not a shard folder written by `uft data shard`")
            return path.read_text(encoding="utf-8")
        from litdata.streaming.downloader import get_downloader

        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, name)
            try:
                get_downloader(self.location, tmp, []).download_file(f"{self.location}/{name}", local)
                return Path(local).read_text(encoding="utf-8")
            except Exception as err:  # the storage client's own error types
                raise InputError(f"data.target_shards: cannot read {self.location}/{name}: {err}") from None

    def _read_samples(self, text: str, total: int) -> tuple[list[Sample], list[int]]:
        where = f"{self.location}/{SAMPLES_FILE}"
        lines = text.splitlines()
        if not lines or lines[0] != HEADER:
            raise InputError(f"{where}:1: expected the header {HEADER!r}")
        samples, positions = [], []
        for lineno, line in enumerate(lines[1:], start=2):
            fields = line.split("\t", 3)
            if len(fields) != 4 or not all(re.fullmatch(r"-?[0-9]+", f) for f in fields[:3]):
                raise InputError(f"{where}:{lineno}: cannot parse {line!r}: expected index, position, label, path")
            index, position, label = (int(f) for f in fields[:3])
            if index != len(samples) or not 0 <= position < total or label < UNLABELED:
                raise InputError(f"{where}:{lineno}: index {index}, position {position} or label {label} out of order")
            samples.append(Sample(fields[3], label))
            positions.append(position)
        if len(samples) != total or len(set(positions)) != total:
            raise InputError(f"{where} lists {len(samples)} images, the shards hold {total}: written by another run?")
        return samples, positions

    def chunk_of(self, path: str) -> int:
        """The chunk (shard file) that holds the image at ``path``."""
        return bisect.bisect_right(self._chunk_ends, self._position[path])

    def order_groups(self, paths: list[str]) -> list[int]:
        return [self.chunk_of(path) for path in paths]

    def record(self, path: str) -> dict:
        """The stored record of the image at ``path``: index, label, path and the file's bytes."""
        if self._dataset is None:
            from litdata import StreamingDataset

            # Records are read one at a time in an order of our own: no decoding of windows ahead.
            self._dataset = StreamingDataset(self.location, cache_dir=self.cache_dir, batch_decode=False)
        position = self._position[path]
        record = self._dataset[position]
        if record["path"] != path:
            stored = record["path"]
            raise RuntimeError(f"{self.location}: record {position} holds {stored}, the sample list says {path}")
        return record

    def read(self, path: str) -> Image.Image:
        return read_rgb(io.BytesIO(self.record(path)["image"]))

    def reason(self, path: str) -> str | None:
        return unreadable_reason(io.BytesIO(self.record(path)["image"]))

    def unreadable(self, paths: Iterable[str]) -> dict[int, tuple[str, str]]:
        reasons = {i: (path, self.reason(path)) for i, path in enumerate(paths)}
        return {i: (path, reason) for i, (path, reason) in reasons.items() if reason is not None}

    def describe(self, path: str) -> str:
        return f"{path} in the shards at {self.location}"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_dataset": None}  # each worker opens its own


def _human(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} kB"


def main(argv: list[str] | None = None) -> None:
    """``uft data shard SOURCE OUT``: write the images of a list file or an ImageFolder tree as shards."""
    import argparse
    import sys

    from uft.data.lists import read_class_names, read_list_file, scan_image_folder

    parser = argparse.ArgumentParser(
        prog="uft data shard",
        description="Write target images as litdata shards for --data.target_shards (same input, same shards).",
    )
    parser.add_argument("source", help="a list file ('relative/path.jpg <label>' lines) or an ImageFolder tree")
    parser.add_argument("out", help="the new shard folder (it must not exist, or be empty); upload it as it is")
    parser.add_argument("--root", help="the folder a list file's paths are relative to (default: the list's folder)")
    parser.add_argument("--class-names", help="class-name file: checks a list's labels; names a tree's folders")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, help="bytes per shard (64 MiB)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order the records are stored in")
    args = parser.parse_args(argv)
    try:
        names = read_class_names(args.class_names)[0] if args.class_names else None
        source = Path(args.source)
        if source.is_dir():
            if names is None:
                raise InputError(f"{source} is a folder: pass --class-names, whose names are its class folders")
            folder, samples = source, scan_image_folder(source, names)
        elif source.is_file():
            folder = Path(args.root) if args.root else source.parent
            samples = read_list_file(source, folder, len(names) if names else 2**31)
        else:
            raise InputError(f"source not found: {source}")
        if args.chunk_bytes < 1:
            raise InputError(f"--chunk-bytes must be positive, got {args.chunk_bytes}")
        summary = write_shards(samples, folder, args.out, chunk_bytes=args.chunk_bytes, seed=args.seed)
    except InputError as err:
        print(f"uft: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"uft: wrote {summary.count} images as {summary.chunks} shards ({_human(summary.size)}) to "
        f"{summary.folder.resolve()}; train on them with --data.target_shards={summary.folder.resolve()}"
    )
