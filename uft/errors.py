"""Errors the CLI reports as one line, without a traceback."""


class InputError(ValueError):
    """Bad user input (a file, a line, a value), found before any work starts."""


class Diverged(InputError):
    """Training produced a non-finite loss or non-finite parameters; the run stops at that step (the last saved
    checkpoint is left as it was)."""
