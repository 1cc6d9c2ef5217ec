"""``uft data COMMAND ...``: the data commands, each run by the module of the data code it uses."""

from __future__ import annotations

from uft.data import check, shards
from uft.errors import InputError, one_line_errors

COMMANDS = {"check": check.main, "shard": shards.main}

USAGE = (
    "use `uft data check DATASET ROOT` (check an unpacked benchmark and write its list files) or "
    "`uft data shard SOURCE OUT` (write target images as shards); add --help to either"
)


def main(argv: list[str]) -> None:
    """Run ``uft data <argv>``: ``argv[0]`` names the command, the rest are its arguments. No command, or an
    unknown one, ends with one ``uft: error:`` line naming the commands (exit status 2)."""
    with one_line_errors():
        if not argv or argv[0] not in COMMANDS:
            given = f"unknown command {argv[0]!r}" if argv else "a command is missing"
            raise InputError(f"uft data: {given}: {USAGE}")
    COMMANDS[argv[0]](argv[1:])
