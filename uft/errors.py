"""Errors the CLI reports as one line, without a traceback."""


class InputError(ValueError):
    """Bad user input (a file, a line, a value), found before any work starts."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a one-line report."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


class Diverged(InputError):
    """Training produced a non-finite loss or non-finite parameters; the run stops at that step (the last saved
    checkpoint is left as it was)."""
