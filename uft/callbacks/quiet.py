"""Lightning's noise hidden in the processes that ``ddp_spawn`` starts."""

from __future__ import annotations

import contextlib
import multiprocessing

from lightning.pytorch import Callback, LightningModule, Trainer

from uft.quiet import quiet_lightning


class QuietSpawnedProcesses(Callback):
    """Hides :func:`uft.quiet.quiet_lightning`'s warnings and console lines in a process that Lightning started
    for the run (``strategy: ddp_spawn``): such a process runs none of the command line's code, so the filters that
    :func:`uft.cli.cli_main` applies around the run are not in force there. It enters them when the trainer is set
    up in that process, for the rest of the process's life (the process ends with the run). Processes that
    ``torchrun``, ``srun`` or ``ddp`` start run the command line themselves and need nothing."""

    def __init__(self) -> None:
        self._quiet: contextlib.ExitStack | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if multiprocessing.parent_process() is not None and self._quiet is None:
            self._quiet = contextlib.ExitStack()
            self._quiet.enter_context(quiet_lightning())
