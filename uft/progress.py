"""Progress bars for long work that prints nothing else: counting images decoded, written or encoded."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int, desc: str, unit: str = "img", enabled: bool = True) -> tqdm:
    """A progress bar with count and rate on stderr, for work that runs minutes without another word; drawn only
    when stderr is a terminal (logs, pipes and tests get nothing) and ``enabled`` (one process of several), and
    erased when done: the command's own lines say what was done. Use it as a context manager, so that it is gone
    before an error line is printed."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
        smoothing=0.1,
    )
