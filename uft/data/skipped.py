"""Images that cannot be read: how to tell, and the run's record of them.

A loader returns an unreadable image as a placeholder with its ``readable`` column false (:mod:`uft.data.batch`);
whoever consumes the batch drops the row and reports the sample to a :class:`SkippedImages` record, which names
each file once and stops the run when a split holds more unreadable images than it may.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING

from PIL import Image

from uft.data.batch import Batch
from uft.data.decode import decode_rgb
from uft.distributed import gather_objects
from uft.errors import InputError, first_line

if TYPE_CHECKING:  # datasets imports this module
    from uft.data.datasets import ImageSource

# What PIL and the file system raise for a missing, zero-byte, truncated, corrupt or foreign file, and what
# decoding raises for an image without a mapping to 8-bit RGB (UninterpretableImage is a ValueError) or too large.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_rgb(file: str | Path | IO[bytes]) -> Image.Image:
    """The image in ``file`` (a path or an open binary file), fully decoded, as 8-bit RGB the way a viewer shows it
    (a truncated file fails here, not later): upright by its EXIF orientation, 16-bit and float images scaled by
    their range, transparent parts white. See :mod:`uft.data.decode` for the rules."""
    return decode_rgb(file)


def unreadable_reason(file: str | Path | IO[bytes]) -> str | None:
    """Why the image in ``file`` (a path or an open binary file) cannot be read, in a few words; ``None`` when it
    can. It decodes with :func:`read_rgb`, so the two agree on every image."""
    try:
        read_rgb(file)
    except UNREADABLE as err:
        return f"{type(err).__name__}: {first_line(err, 120)}"
    return None


def unreadable_files(
    folder: Path, paths: Iterable[str], done: Callable[[], object] | None = None
) -> dict[int, tuple[str, str]]:
    """``{position: (path, reason)}`` of the ``paths`` (relative to ``folder``) that cannot be read, each decoded
    in a thread pool; ``done`` is called after each image (a progress bar's update). An interrupt (Ctrl-C,
    SIGTERM) stops at once instead of after decoding the rest."""
    paths = list(paths)
    bad = {}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        try:
            for i, reason in enumerate(pool.map(unreadable_reason, (folder / path for path in paths))):
                if done is not None:
                    done()
                if reason is not None:
                    bad[i] = (paths[i], reason)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return bad


class UnreadableSeen:
    """The unreadable images met in one pass (an evaluation, a prediction), by split: batches are stripped of them
    as they come (:meth:`readable`), and they are reported together at the end (:meth:`gather`), since a report
    may stop the run and must happen on every process at once."""

    def __init__(self) -> None:
        self.found: dict[str, list[int]] = {}

    def readable(self, split: str, batch: Batch) -> Batch:
        """``batch`` without its unreadable rows, which are remembered (no device wait when every image was read)."""
        found = batch.unreadable_indices()
        if found:
            self.found.setdefault(split, []).extend(found)
        return batch.readable_rows()

    def gather(self) -> dict[str, list[int]]:
        """Every process's finds, by split, sorted; the record starts empty again. A collective: every process
        calls it."""
        found: dict[str, set[int]] = {}
        for part in gather_objects(self.found):
            for split, indices in part.items():
                found.setdefault(split, set()).update(indices)
        self.found = {}
        return {split: sorted(found[split]) for split in sorted(found)}


class SkippedImages:
    """The unreadable images of a run, by split: each file reported once, and at most ``max_share`` of a split.

    Once :meth:`attach`-ed to the splits' sample paths and image sources, it takes reports by sample index
    (:meth:`report`, :meth:`verify`), names each new file in a warning and tells ``on_change`` (the callback that
    writes ``skipped_images.txt``) after every report, also one that stops the run.

    Args:
        max_share: share of a split's images that may be unreadable; one more stops the run with an error.
    """

    def __init__(self, max_share: float = 0.01) -> None:
        if not 0.0 <= max_share <= 1.0:
            raise InputError(f"data.max_skipped must be a share in [0, 1], got {max_share}")
        self.max_share = max_share
        self.found: dict[str, dict[int, tuple[str, str]]] = {}  # split -> sample index -> (path, reason)
        self.paths: dict[str, list[str]] = {}  # split -> sample paths by index (attach)
        self.sources: dict[str, ImageSource] = {}  # split -> where its images are read (attach)
        self.on_change: Callable[[], None] | None = None
        # How a newly found file is named (a data module on several processes names it on one only).
        self.warn: Callable[[str], object] = warnings.warn

    def attach(self, paths: dict[str, list[str]], sources: dict[str, ImageSource]) -> None:
        """The splits reported on: each one's sample paths by index, and where its images are read."""
        self.paths, self.sources = paths, sources

    def report(self, split: str, indices: Iterable[int]) -> None:
        """Samples of ``split`` that could not be read (by sample index); see :meth:`note`."""
        paths, source = self.paths[split], self.sources[split]
        self.note(split, {i: (paths[i], source.reason(paths[i]) or "could not be read at the time") for i in indices})

    def verify(self, splits: Iterable[str]) -> None:
        """Decode every image of ``splits`` now and :meth:`note` the unreadable ones."""
        for split in splits:
            self.note(split, self.sources[split].unreadable(self.paths[split]))

    def note(self, split: str, entries: dict[int, tuple[str, str]]) -> None:
        """:meth:`add` ``{index: (path, reason)}`` of an attached split, warn once about each new file, and tell
        ``on_change``, even when the split now holds too many (the error is raised after)."""
        try:
            new = self.add(split, entries, len(self.paths[split]))
        finally:
            if self.on_change is not None:
                self.on_change()
        for path, reason in new:
            where = self.sources[split].describe(path)
            self.warn(f"uft: skipping unreadable image {where} ({split} split): {reason}")

    def totals(self) -> dict[str, int]:
        """Images of each attached split: the denominators of :meth:`summary`."""
        return {split: len(paths) for split, paths in self.paths.items()}

    def add(self, split: str, entries: dict[int, tuple[str, str]], total: int) -> list[tuple[str, str]]:
        """Record unreadable samples ``{index: (path, reason)}`` of a split of ``total`` images; returns the
        ``(path, reason)`` of those not recorded before. Raises :class:`~uft.errors.InputError` when the split now
        holds more unreadable images than ``max_share`` allows."""
        known = self.found.setdefault(split, {})
        new = [entry for index, entry in sorted(entries.items()) if index not in known]
        known.update(entries)
        if len(known) > self.max_share * total:
            examples = "; ".join(f"{path} ({reason})" for path, reason in list(known.values())[:3])
            raise InputError(
                f"{len(known)} of the {total} {split} images cannot be read ({100 * len(known) / total:.1f}%, more "
                f"than data.max_skipped={self.max_share:g}), e.g. {examples}: fix or remove them, or raise "
                "data.max_skipped"
            )
        return new

    def indices(self, split: str) -> list[int]:
        """Sample indices of the unreadable images of ``split``, sorted."""
        return sorted(self.found.get(split, {}))

    def __len__(self) -> int:
        return sum(len(found) for found in self.found.values())

    def lines(self) -> list[str]:
        """``split<TAB>path<TAB>reason`` per unreadable image: the content of ``skipped_images.txt``."""
        return [
            f"{split}\t{path}\t{reason}"
            for split, found in sorted(self.found.items())
            for _, (path, reason) in sorted(found.items())
        ]

    def summary(self, totals: dict[str, int]) -> str:
        """One line: how many images of which split were skipped."""
        parts = [f"{split} {len(found)} of {totals.get(split, '?')}" for split, found in sorted(self.found.items())]
        return f"{len(self)} unreadable images were skipped ({', '.join(parts)})"

    def state_dict(self) -> dict:
        return {"found": {split: dict(found) for split, found in self.found.items()}}

    def load_state_dict(self, state: dict, current: dict[str, list[str]]) -> None:
        """Restore a record, keeping the entries whose index still holds the same path in ``current``
        (split -> sample paths)."""
        for split, found in state.get("found", {}).items():
            paths = current.get(split, [])
            kept = {i: entry for i, entry in found.items() if i < len(paths) and paths[i] == entry[0]}
            if kept:
                self.found.setdefault(split, {}).update(kept)
