"""Callbacks of the harness: checkpoints a later run can resume from, and the run summary ``metrics.json``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps ``last.ckpt`` in ``<default_root_dir>/checkpoints`` unless told otherwise.

    Loggers give every run a new version folder; keeping checkpoints in one folder per experiment is what lets a
    later ``uft fit ... --ckpt_path last`` find the checkpoint of the interrupted run.

    Args:
        dirpath: checkpoint folder; default ``<trainer.default_root_dir>/checkpoints``.
        save_last: write ``last.ckpt`` at every save.
        save_top_k: number of best checkpoints to keep besides ``last`` (0: ``last`` only).
        every_n_epochs: save every this many epochs.
        kwargs: further ``ModelCheckpoint`` arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        save_last: bool = True,
        save_top_k: int = 0,
        every_n_epochs: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(
            dirpath=dirpath, save_last=save_last, save_top_k=save_top_k, every_n_epochs=every_n_epochs, **kwargs
        )

    def _default_dir(self, trainer: Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._default_dir(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        # Called to resolve `ckpt_path="last"` before `setup`.
        self._default_dir(trainer)
        return super()._find_last_checkpoints(trainer)


class MetricsJSON(Callback):
    """Writes ``metrics.json`` (split -> metric -> value) into the run's log directory after each evaluation,
    so the file holds the final values when the run ends. Undefined values (e.g. AUROC without unknowns) are null.
    On several processes rank 0 writes it (the metrics are already gathered over all processes).

    Args:
        filename: name of the file inside the log directory.
    """

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename

    def _write(self, trainer: Trainer) -> None:
        if trainer.sanity_checking:
            return
        # `log_dir` is a broadcast under DDP: every process reads it, only rank 0 writes.
        self._write_summary(trainer, Path(trainer.log_dir or trainer.default_root_dir))

    @rank_zero_only
    def _write_summary(self, trainer: Trainer, folder: Path) -> None:
        summary: dict[str, dict[str, float | None]] = {}
        for key, value in trainer.callback_metrics.items():
            split, sep, name = key.partition("/")
            if sep:
                value = float(value)
                summary.setdefault(split, {})[name] = None if math.isnan(value) else value
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.filename).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer)
