"""Files written whole or not at all, and output folders checked before a run writes into them.

A full disk, a read-only folder or a file where a folder should be ends a run with one line naming the path
(:class:`~uft.errors.InputError`), never with a half-written file: each file is written beside its place and renamed
over it, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from uft.errors import InputError

# What the file system answers when a file cannot be written: read-only, no permission, full (or a quota or file
# size limit), a file where a folder should be, a folder where a file should be.
WRITE_ERRORS = (
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
)


def write_error(path: str | os.PathLike, err: OSError) -> InputError:
    """The one-line error for ``path`` that could not be written."""
    reason = "a file is in the way" if err.errno in (errno.ENOTDIR, errno.EEXIST) else (err.strerror or str(err))
    return InputError(f"cannot write {path}: {reason}")


def write_atomic(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it to ``path``: a full disk or a read-only
    folder leaves no half-written file (and an earlier one intact), and is an :class:`~uft.errors.InputError` naming
    the path."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") if binary else temporary.open("w", newline="", encoding="utf-8") as f:
            write(f)
        os.replace(temporary, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` into ``path``, whole or not at all (:func:`write_atomic`)."""
    write_atomic(path, lambda f: f.write(text))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` into ``path``, whole or not at all (:func:`write_atomic`)."""
    write_atomic(path, lambda f: f.write(data), binary=True)


def check_output_folder(folder: str | os.PathLike, option: str) -> None:
    """Before a run: ``folder`` (what ``option`` names) is, or can be made, a folder this process can write into; a
    file in the way, a read-only file system or a full disk is one line now rather than a traceback mid-run."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder} is a file, not a folder")
    probe = folder / f".uft-write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"uft")
    except OSError as err:
        raise InputError(f"{option} {folder}: {write_error(err.filename or folder, err)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
