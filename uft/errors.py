"""Errors the CLI reports as one line, without a traceback, and the one place that prints that line and exits."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import NamedTuple


class UFTError(Exception):
    """What a ``uft`` command reports as one ``uft: error: <message>`` line and exit status 2 (see
    :func:`one_line_errors`), never as a traceback."""


class InputError(UFTError, ValueError):
    """Bad user input (a file, a line, a value), found before any work starts."""


class Diverged(UFTError):
    """Training produced a non-finite loss or non-finite parameters; the run stops at that step.

    ``checkpoint`` (set by the checkpoint callback as the run stops) says which state the run's ``last.ckpt``
    holds; it ends the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.checkpoint: str | None = None

    def __str__(self) -> str:
        return f"{self.args[0]}; {self.checkpoint}" if self.checkpoint else str(self.args[0])


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a one-line report."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


class Exit(NamedTuple):
    """How a command ends on an exception: ``uft: <line>`` on stderr and exit status ``status``."""

    line: str
    status: int = 2

    @classmethod
    def error(cls, message: object, status: int = 2) -> Exit:
        """``uft: error: <message>``."""
        return cls(f"error: {message}", status)


@contextlib.contextmanager
def one_line_errors(translate: Callable[[BaseException], Exit | None] | None = None) -> Iterator[None]:
    """Within the block, a :class:`UFTError` ends the process with ``uft: error: <message>`` on stderr and exit
    status 2, and so does any exception that ``translate`` turns into an :class:`Exit` (with its line and status);
    anything else propagates as it is.

    Args:
        translate: a command's own one-line reports (a parser's error, a failed write, a signal); returns ``None``
            for an exception that is not one of them.
    """
    try:
        yield
    except BaseException as err:  # a signal's stop is a BaseException that translate may report; the rest re-raises
        report = Exit.error(err) if isinstance(err, UFTError) else translate(err) if translate else None
        if report is None:
            raise
        print(f"uft: {report.line}", file=sys.stderr)
        sys.exit(report.status)
