"""The one error type for bad user input: the CLI prints its message alone, without a traceback."""


class InputError(ValueError):
    """Bad user input (a file, a line, a value), found before any work starts."""
