"""Errors the CLI reports as one line, without a traceback."""


class InputError(ValueError):
    """Bad user input (a file, a line, a value), found before any work starts."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a one-line report."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


class Diverged(InputError):
    """Training produced a non-finite loss or non-finite parameters; the run stops at that step.

    ``checkpoint`` (set by the checkpoint callback as the run stops) says which state the run's ``last.ckpt``
    holds; it ends the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.checkpoint: str | None = None

    def __str__(self) -> str:
        return f"{self.args[0]}; {self.checkpoint}" if self.checkpoint else str(self.args[0])
