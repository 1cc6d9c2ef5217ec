"""Lightning's warnings and console lines that say nothing to a uft user, hidden while a uft command runs."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Lightning's warnings that say nothing to a uft user, by message (hidden within `quiet_lightning` only).
QUIET_WARNINGS = (
    # The frozen CLIP stays in eval mode on purpose (see UFTModule.train); Lightning's warning about it is noise.
    r".*module\(s\) in eval mode.*",
    # Every process computes every split's metrics (a collective), also where it saw no batch of that split.
    r".*was called before the ``update`` method.*",
    # Logged metrics are computed from states already gathered over all processes: the same value on each.
    r".*It is recommended to use `self.log\('(test|target|selection)/.*sync_dist=True.*",
    # Lightning's own deprecation inside its pytree helper, not something a user can act on.
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    # `cli_main` passes the command line with config includes expanded (uft.config_files): not a mistake.
    r".*LightningCLI's args parameter is intended to run from within Python.*",
    # Evaluating a checkpoint into another run folder (the usual case) is not a problem worth a paragraph.
    r".*The dirpath has changed from.*",
    # `--ckpt_path last` without a checkpoint: `before_fit` says so in one line.
    r".*there is no last checkpoint available.*",
)


class _QuietLightning(logging.Filter):
    """Drops Lightning's start-up banners and tips from the console; its warnings and our lines stay."""

    NOISE = (
        "GPU available:",
        "TPU available:",
        "HPU available:",
        "Tip:",
        "LOCAL_RANK:",
        "stopped: `max_",
        "Seed set to",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


# (A filter applies to records of its own logger only, not to those of child loggers: each is named.)
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's warnings (:data:`QUIET_WARNINGS`) and console lines (:class:`_QuietLightning`) that say nothing
    to a uft user, hidden within the block only: the warning filters in force before it are restored after it and
    the console filters removed, so that whoever imports :mod:`uft.cli` (a script, the tests) keeps its own.
    :func:`uft.cli.cli_main` builds (and runs) the CLI inside it; the comparison runner, which runs the trainer it gets
    back, runs inside it as well."""
    quiet = _QuietLightning()
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).addFilter(quiet)
        try:
            yield
        finally:
            for name in QUIET_LOGGERS:
                logging.getLogger(name).removeFilter(quiet)
