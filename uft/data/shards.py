"""Target images as litdata shards: written once from a list file or an ImageFolder tree, read from a local folder
or an object store (``s3://``, ``gs://``, ``azure://``).

A shard folder holds litdata's chunks and ``index.json`` plus ``uft_samples.tsv``, the sample list: one line per
image with its **global sample index** (its position in the source's sample list, the order the data module reads
a list file or a folder in), the record's position in the shards, its label (``-1`` when unknown) and its path.
Each record holds the same index, label and path and the image file's bytes as they were (nothing is re-encoded, so
a decoded shard image is pixel for pixel the decoded file). Records are stored in a seeded random order, so every
shard holds a mix of classes and a training order that reads shard after shard still mixes them.

``uft_shards.json`` beside them holds the class names the labels refer to (``null`` when the shards were written
without ``--class-names``) and a SHA-256 digest of the sample list (index, position, label and path of every
line), so that a run configured with other class names, or a sample list edited after the shards were written, is
refused rather than trained on with wrong labels. Shard folders written before it existed have no such file: their
class names and sample list are "unknown" and read unchecked (the data module warns). Each record's stored index,
label and path are compared with the sample list's when the record is read.

The data module reads the sample list first (its splits, protocols and per-sample tables work on it exactly as on a
list file), then each image by path. Files of a remote shard folder are fetched with a time limit of
``UFT_SHARD_TIMEOUT`` seconds (default 30), so that an unreachable endpoint is an error rather than a hang.
"""

from __future__ import annotations

import argparse
import bisect
import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from PIL import Image

from uft.data.lists import UNLABELED, Sample
from uft.data.skipped import read_rgb, unreadable_reason
from uft.errors import Exit, InputError, first_line, one_line_errors
from uft.progress import progress
from uft.run_lock import process_runs

SAMPLES_FILE = "uft_samples.tsv"
META_FILE = "uft_shards.json"
META_FORMAT = 1
INDEX_FILE = "index.json"  # litdata's
HEADER = "index\tposition\tlabel\tpath"
DEFAULT_CHUNK_BYTES = 64 << 20
TIMEOUT_VARIABLE = "UFT_SHARD_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds for one small file of a remote shard folder
PARTIAL = ".{name}.partial-"  # the prefix of the folder shards are written into before they are moved into place
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URL (``s3://bucket/prefix``) rather than a local folder."""
    return "://" in location and not location.startswith("file://")


def samples_digest(samples: list[Sample], positions: list[int]) -> str:
    """The SHA-256 (hex) of a sample list: every sample's index, position, label and path, in order.

    Taken over the parsed list rather than the file's bytes, so that only a change of what the list says (not of
    its line endings) counts as an edit."""
    digest = hashlib.sha256()
    for index, (sample, position) in enumerate(zip(samples, positions)):
        digest.update(f"{index}\t{position}\t{sample.label}\t{sample.path}\n".encode())
    return digest.hexdigest()


def parse_size(text: str) -> int:
    """A number of bytes from ``text``: a plain integer or a number with a unit (``500kB``, ``1MB``, ``64MiB``;
    ``kB``/``MB``/``GB`` are powers of 1000, ``KiB``/``MiB``/``GiB`` of 1024, any case). Raises
    :class:`argparse.ArgumentTypeError` (argparse's way of refusing a value) otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", text)
    unit = match and SIZE_UNITS.get(match.group(2).lower())
    if not unit:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give bytes as an integer or with a unit (500kB, 1MB, 64MiB, 1GB)"
        )
    number = match.group(1)
    size = int(number) * unit if number.isdigit() else int(float(number) * unit)  # exact for integers
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of bytes")
    return size


@dataclass(frozen=True)
class ShardSummary:
    """What :func:`write_shards` wrote."""

    folder: Path
    count: int
    chunks: int
    size: int  # bytes, chunks and index files together


def _partial_owner(folder: Path, out: Path) -> tuple[int, str] | None:
    """``(pid, host)`` of the process writing the partial folder ``folder`` of ``out``, from its name; ``None``
    when it is not one (or was made by a uft that did not name its writer)."""
    prefix = PARTIAL.format(name=out.name)
    if not folder.name.startswith(prefix):
        return None
    match = re.fullmatch(r"(\d+)@(.+)-[a-z0-9_]+", folder.name[len(prefix) :])  # mkdtemp's suffix holds no "-"
    return (int(match.group(1)), match.group(2)) if match else None


def remove_stale_partials(out: str | Path) -> list[tuple[Path, int]]:
    """Remove the partial folders of ``out`` that a killed :func:`write_shards` left (one killed by SIGKILL or a
    power cut cannot clean up): those whose writer, named in the folder's name, was a process of this host that no
    longer runs. A writer still running, or on another host of a shared file system, is left alone. Returns each
    folder removed with its writer's pid."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed, host = [], socket.gethostname()
    for folder in sorted(out.parent.glob(glob.escape(PARTIAL.format(name=out.name)) + "*")):
        owner = _partial_owner(folder, out)
        if owner is None or owner[1] != host or process_runs(owner[0]) or not folder.is_dir():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append((folder, owner[0]))
    return removed


def write_shards(
    samples: list[Sample],
    folder: str | Path,
    out: str | Path,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> ShardSummary:
    """Write the images of ``samples`` (paths relative to ``folder``) as litdata shards into the new folder ``out``.

    The same samples, files, ``chunk_bytes``, ``seed`` and ``class_names`` give byte-identical shards (litdata's
    ``updated_at`` is set to a digest of the content instead of the time, so a changed data set still gets a new
    cache key). ``class_names`` (the names the labels refer to, if known) and a digest of the sample list go into
    ``uft_shards.json``. The shards are written into a temporary folder beside ``out``, named after the writing
    process (``.OUT.partial-<pid>@<host>-<random>``), and moved into place when complete: a failed run, or one
    stopped by Ctrl-C (or SIGTERM, under :func:`stop_on_signals`), removes it; one killed outright leaves it to
    :func:`remove_stale_partials`. ``out`` must not exist yet (or be empty). Where stderr is a terminal, a
    :func:`progress` bar counts the images written.

    Raises:
        InputError: for an image that cannot be read, an ``out`` in the way, or an output file system that refuses
            the shards (read-only, full); nothing is left behind then.
    """
    out, folder = Path(out), Path(folder)
    _check_shard_input(samples, out, class_names)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(samples), generator=generator).tolist()  # order[position] = sample index
    owner = f"{os.getpid()}@{socket.gethostname()}-"  # who writes it: a later run removes it only once we are gone
    try:
        partial = Path(tempfile.mkdtemp(prefix=PARTIAL.format(name=out.name) + owner, dir=out.parent))
    except OSError as err:
        raise InputError(
            f"cannot create a folder in {out.parent}: {err.strerror or err}; nothing was written"
        ) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        partial.chmod(0o777 & ~umask)  # a folder as mkdir would make it (mkdtemp's is private)
        _write_records(samples, order, folder, partial, chunk_bytes, out.name)
        _pin_updated_at(partial)
        _write_sample_list(samples, order, partial, class_names)
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except OSError as err:  # the output side (an image that cannot be read is an InputError above)
        name = f" ({Path(err.filename).name})" if err.filename else ""
        raise InputError(
            f"cannot write the shards to {out}: {err.strerror or err}{name}; nothing was written"
        ) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    files = [p for p in out.iterdir() if p.is_file()]
    chunks = sum(p.name.endswith(".bin") for p in files)
    return ShardSummary(out, len(samples), chunks, sum(p.stat().st_size for p in files))


def _check_shard_input(samples: list[Sample], out: Path, class_names: list[str] | None) -> None:
    """What :func:`write_shards` refuses before writing anything."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file: shards go into a new folder")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty: shards go into a new folder")
    if not out.parent.is_dir():
        if out.parent.exists():
            raise InputError(f"{out.parent} is a file, not a folder: write the shards elsewhere")
        raise InputError(f"the folder {out.parent} does not exist: create it first, or write the shards elsewhere")
    for sample in samples:
        if "\t" in sample.path or "\n" in sample.path:
            raise InputError(f"image path {sample.path!r} holds a tab or a line break, which the sample list cannot")
    if class_names is not None and any(s.label >= len(class_names) for s in samples):
        raise InputError(f"a label of the samples is outside the {len(class_names)} class names")


def _write_records(
    samples: list[Sample], order: list[int], folder: Path, partial: Path, chunk_bytes: int, name: str
) -> None:
    """The records (index, label, path, the file's bytes) in ``order``, as litdata chunks in ``partial``."""
    from litdata.streaming.writer import BinaryWriter

    writer = BinaryWriter(str(partial), chunk_bytes=chunk_bytes)
    with progress(len(order), f"writing {name}") as bar:
        for position, index in enumerate(order):
            sample = samples[index]
            try:
                image = (folder / sample.path).read_bytes()
            except OSError as err:
                reason = err.strerror or err
                raise InputError(f"cannot read {folder / sample.path}: {reason}; nothing was written") from None
            writer[position] = {"index": index, "label": sample.label, "path": sample.path, "image": image}
            bar.update()
    writer.done()
    writer.merge()


def _write_sample_list(samples: list[Sample], order: list[int], partial: Path, class_names: list[str] | None) -> None:
    """``uft_samples.tsv`` (each sample's index, record position, label, path) and ``uft_shards.json``."""
    position_of = {index: position for position, index in enumerate(order)}
    positions = [position_of[i] for i in range(len(samples))]
    lines = [HEADER] + [f"{i}\t{positions[i]}\t{s.label}\t{s.path}" for i, s in enumerate(samples)]
    (partial / SAMPLES_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    meta = {"format": META_FORMAT, "class_names": class_names, "samples_sha256": samples_digest(samples, positions)}
    (partial / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _pin_updated_at(folder: Path) -> None:
    """Replace litdata's write time in ``index.json`` by a digest of the chunks (deterministic output)."""
    index_file = folder / INDEX_FILE
    index = json.loads(index_file.read_text())
    digest = hashlib.sha256()
    for chunk in index["chunks"]:
        digest.update((folder / chunk["filename"]).read_bytes())
    index["updated_at"] = str(int.from_bytes(digest.digest()[:6], "big"))  # a number, as litdata writes it
    index_file.write_text(json.dumps(index, sort_keys=True))


def shard_timeout() -> float:
    """Seconds to wait for one small file of a remote shard folder: ``UFT_SHARD_TIMEOUT``, else 30."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise InputError(f"{TIMEOUT_VARIABLE}={text!r}: expected a positive number of seconds")
    return value


def _is_missing(err: Exception) -> bool:
    """Whether a storage client's error says that the object does not exist (each client has its own type)."""
    text = f"{type(err).__name__}: {err}"
    return isinstance(err, FileNotFoundError) or re.search(r"NotFound|Not Found|NoSuchKey|\b404\b", text) is not None


def _kind(err: Exception) -> str:
    """The exception's type as a reader would look it up (``struct.error``, not ``error``)."""
    kind = type(err)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


class ImageShards:
    """Images stored as litdata shards (an :class:`~uft.data.datasets.ImageSource`), and their sample list.

    Each loader worker opens its own ``litdata.StreamingDataset`` on first use and reads records by position;
    from an object store litdata downloads each chunk once into ``cache_dir`` and reads it from there. A damaged
    shard folder is an :class:`~uft.errors.InputError` naming the chunk file: a local chunk is checked against the
    size ``index.json`` gives before it is first read, and a record litdata cannot decode, or one that is not the
    record the sample list names, is refused. Read in a loader worker, the error marks the image as unreadable
    like any other (:mod:`uft.data.skipped`); the main process then asks :meth:`reason`, which raises it.

    Attributes:
        samples: the sample list, by global sample index.
        class_names: the class names the labels refer to, as ``uft data shard`` stored them; ``None`` when the
            shards were written without them, or before they were stored (see ``has_metadata``).
        digest: the SHA-256 of the sample list (:func:`samples_digest`), checked against the stored one.
        has_metadata: whether the folder holds ``uft_shards.json``; older shard folders do not, and their class
            names and sample list cannot be checked.

    Args:
        location: the shard folder, or its URL (``s3://bucket/prefix``; credentials as the storage's client reads
            them, e.g. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL`` for S3).
        cache_dir: where chunks of remote shards are kept (default: litdata's).
        timeout: seconds to wait for each small file of a remote shard folder (default: :func:`shard_timeout`).
    """

    def __init__(self, location: str, cache_dir: str | None = None, timeout: float | None = None) -> None:
        self.location = location.rstrip("/") if is_remote(location) else str(Path(location.removeprefix("file://")))
        self.cache_dir = cache_dir
        self.timeout = shard_timeout() if timeout is None else timeout
        chunks = self._read_index(self._fetch(INDEX_FILE))
        self._chunk_files = [name for name, _, _ in chunks]
        self._chunk_bytes = [size for _, _, size in chunks]
        counts = [count for _, count, _ in chunks]
        self._chunk_ends = [sum(counts[: i + 1]) for i in range(len(counts))]
        self.samples, self._positions = self._read_samples(self._fetch(SAMPLES_FILE), self._chunk_ends[-1])
        self._position = {sample.path: position for sample, position in zip(self.samples, self._positions)}
        self._index = {sample.path: index for index, sample in enumerate(self.samples)}
        self.digest = samples_digest(self.samples, self._positions)
        self.class_names, self.has_metadata = self._read_meta(self._fetch(META_FILE, optional=True))
        self._dataset = None
        self._checked: set[int] = set()  # chunks found whole by this process

    def _fetch(self, name: str, optional: bool = False) -> str | None:
        """The text of one small file of the shard folder (downloaded when remote); ``None`` when it is missing
        and ``optional``."""
        if not is_remote(self.location):
            path = Path(self.location) / name
            if not Path(self.location).is_dir():
                raise InputError(f"data.target_shards: no shard folder at {self.location}")
            if not path.is_file():
                if optional:
                    return None
                raise InputError(f"{self.location} holds no {name}: not a shard folder written by `uft data shard`")
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                reason = err.strerror if isinstance(err, OSError) else f"not text ({err.reason})"
                raise InputError(f"data.target_shards: cannot read {path}: {reason}") from None
        return self._download(name, optional)

    def _download(self, name: str, optional: bool) -> str | None:
        from litdata.streaming.downloader import get_downloader

        url, outcome = f"{self.location}/{name}", {}
        tmp = tempfile.mkdtemp(prefix="uft-shards-")

        def download() -> None:
            try:
                local = os.path.join(tmp, name)
                get_downloader(self.location, tmp, []).download_file(url, local)
                outcome["text"] = Path(local).read_text(encoding="utf-8")
            except Exception as err:  # the storage client's own error types
                outcome["error"] = err

        # The storage clients retry an unreachable endpoint for minutes (litdata gives boto3 1000 attempts), and
        # cannot be interrupted: the download runs in a daemon thread, abandoned when the time is up.
        thread = threading.Thread(target=download, name=f"uft-fetch-{name}", daemon=True)
        try:
            thread.start()
            thread.join(self.timeout)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if thread.is_alive():
            raise InputError(
                f"data.target_shards: no answer for {url} within {self.timeout:g} s: is the endpoint reachable "
                f"(AWS_ENDPOINT_URL or the storage's own setting)? Wait longer with {TIMEOUT_VARIABLE}=SECONDS"
            )
        err = outcome.get("error")
        if err is not None and optional and _is_missing(err):
            return None
        if err is not None:
            raise InputError(f"data.target_shards: cannot read {url}: {type(err).__name__}: {first_line(err)}")
        return outcome["text"]

    def _read_index(self, text: str) -> list[tuple[str, int, int | None]]:
        """``(file name, records, bytes)`` of each chunk, from litdata's ``index.json``."""
        try:
            chunks = json.loads(text)["chunks"]
            chunks = [(str(c["filename"]), int(c["chunk_size"]), c.get("chunk_bytes")) for c in chunks]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise InputError(
                f"{self.location}/{INDEX_FILE} cannot be parsed ({type(err).__name__}: {first_line(err)}): the shard "
                "folder is damaged; copy or write it again"
            ) from None
        if not chunks:
            raise InputError(f"{self.location}/{INDEX_FILE} lists no chunks: not a shard folder `uft data shard` wrote")
        return chunks

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

    def _read_meta(self, text: str | None) -> tuple[list[str] | None, bool]:
        """The stored class names, and whether there was a metadata file; checks the sample list's digest."""
        if text is None:
            return None, False
        where = f"{self.location}/{META_FILE}"
        try:
            meta = json.loads(text)
            names, digest, version = meta["class_names"], meta["samples_sha256"], meta.get("format", 1)
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{where} cannot be parsed ({type(err).__name__}: {first_line(err)})") from None
        if not isinstance(version, int) or version > META_FORMAT:
            raise InputError(f"{where} is of format {version!r}, newer than this uft reads ({META_FORMAT}): update uft")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise InputError(f"{where}: class_names must be a list of names or null")
        if digest != self.digest:
            raise InputError(
                f"{self.location}/{SAMPLES_FILE} was edited after the shards were written (its digest differs from "
                f"the one in {META_FILE}): its labels, paths or order no longer match the records; restore it, or "
                "write the shards again with `uft data shard`"
            )
        return names, True

    def chunk_of(self, path: str) -> int:
        """The chunk (shard file) that holds the image at ``path``."""
        return bisect.bisect_right(self._chunk_ends, self._position[path])

    def order_groups(self, paths: list[str]) -> list[int]:
        return [self.chunk_of(path) for path in paths]

    def _chunk_name(self, chunk: int) -> str:
        return f"chunk {self._chunk_files[chunk]} of the shards at {self.location}"

    def _check_chunk(self, chunk: int) -> None:
        """Refuse a local chunk that is missing or whose size is not the one ``index.json`` gives (litdata would
        wait for a missing one as for a download, then fail with a message about hung downloads)."""
        expected = self._chunk_bytes[chunk]
        if not is_remote(self.location):  # a remote chunk is checked by its download
            try:
                size = (Path(self.location) / self._chunk_files[chunk]).stat().st_size
            except FileNotFoundError:
                raise InputError(
                    f"{self._chunk_name(chunk)} is missing: the shard folder is incomplete; copy or write it again"
                ) from None
            except OSError as err:
                raise InputError(f"{self._chunk_name(chunk)} cannot be read: {err.strerror or err}") from None
            if expected is not None and size != expected:
                raise InputError(
                    f"{self._chunk_name(chunk)} holds {size} bytes, {INDEX_FILE} says {expected}: the chunk is "
                    "truncated or damaged; copy or write the shards again"
                )
        self._checked.add(chunk)

    def record(self, path: str) -> dict:
        """The stored record of the image at ``path``: index, label, path and the file's bytes.

        Raises:
            InputError: naming the chunk file when it is missing, truncated or cannot be decoded, and naming the
                sample when the record's index, path or label is not the sample list's.
        """
        position, index = self._position[path], self._index[path]
        chunk = bisect.bisect_right(self._chunk_ends, position)
        if chunk not in self._checked:
            self._check_chunk(chunk)
        if self._dataset is None:
            from litdata import StreamingDataset

            try:
                # Records are read one at a time in an order of our own: no decoding of windows ahead.
                self._dataset = StreamingDataset(self.location, cache_dir=self.cache_dir, batch_decode=False)
            except Exception as err:  # litdata's own errors, or the storage client's
                raise InputError(f"cannot open the shards at {self.location}: {first_line(err)}") from None
        try:
            record = self._dataset[position]
            stored = (record["index"], record["label"], record["path"])
        except Exception as err:  # what decoding a damaged chunk raises: struct, Unicode, pickle or litdata errors
            raise InputError(
                f"{self._chunk_name(chunk)} cannot be read (record {position}: {_kind(err)}: "
                f"{first_line(err, 120)}): the chunk is damaged; copy or write the shards again"
            ) from None
        label = self.samples[index].label
        if stored[0] != index or stored[2] != path:
            raise InputError(
                f"{self._chunk_name(chunk)}: record {position} holds sample {stored[0]} ({stored[2]}), "
                f"{SAMPLES_FILE} puts sample {index} ({path}) there: the sample list is not the one written with "
                "these chunks"
            )
        if stored[1] != label:
            raise InputError(
                f"{self.location}: sample {index} ({path}) is stored with label {stored[1]}, {SAMPLES_FILE} gives "
                f"label {label}: the sample list was edited after the shards were written; restore it, or write "
                "the shards again with `uft data shard`"
            )
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
        return {**self.__dict__, "_dataset": None, "_checked": set()}  # each worker opens and checks its own


def _human(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} kB"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`~uft.errors.InputError` (``main`` reports it as one ``uft:
    error:`` line with exit status 2, as every other refusal of the command line) instead of the usage followed by
    the error."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message.removeprefix("argument "))


class Stopped(BaseException):
    """SIGTERM or SIGINT, raised in the main thread so that what is half-written is removed on the way out (a
    BaseException, so that no handler of errors stops it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Stopped` (SIGTERM would otherwise end the process
    without cleaning up). A signal the process was started to ignore stays ignored, and so do further signals once
    one arrived: the cleanup is not to be cut short."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    watched = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]

    def stop(signum: int, frame: object) -> None:
        for s in watched:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in watched}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> None:
    """``uft data shard SOURCE OUT``: write the images of a list file or an ImageFolder tree as shards."""
    from uft.data.lists import read_class_names, read_list_file, scan_image_folder

    parser = OneLineParser(
        prog="uft data shard",
        description="Write target images as litdata shards for --data.target_shards (same input, same shards).",
    )
    parser.add_argument("source", help="a list file ('relative/path.jpg <label>' lines) or an ImageFolder tree")
    parser.add_argument("out", help="the new shard folder (it must not exist, or be empty); upload it as it is")
    parser.add_argument("--root", help="the folder a list file's paths are relative to (default: the list's folder)")
    parser.add_argument(
        "--class-names", help="class-name file: checks a list's labels; names a tree's folders; stored with the shards"
    )
    parser.add_argument(
        "--chunk-bytes",
        type=parse_size,
        default=DEFAULT_CHUNK_BYTES,
        help="bytes per shard: an integer or a size such as 500kB, 1MB, 64MiB (default 64MiB)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the order the records are stored in")
    with one_line_errors():
        args = parser.parse_args(argv)

    def one_line(err: BaseException) -> Exit | None:
        if isinstance(err, Stopped):
            return Exit.error(f"stopped by {err.name}; nothing was written to {args.out}", 128 + err.signum)
        return None

    with one_line_errors(one_line), stop_on_signals():
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
        for partial, pid in remove_stale_partials(args.out):
            print(f"uft: removed {partial}, left by `uft data shard` process {pid}, which is gone", file=sys.stderr)
        summary = write_shards(
            samples, folder, args.out, chunk_bytes=args.chunk_bytes, seed=args.seed, class_names=names
        )
    print(
        f"uft: wrote {summary.count} images as {summary.chunks} shards ({_human(summary.size)}) to "
        f"{summary.folder.resolve()}; train on them with --data.target_shards={summary.folder.resolve()}"
    )
