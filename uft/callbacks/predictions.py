"""``uft predict``'s answers, streamed to ``predictions.csv``."""

from __future__ import annotations

import csv
import heapq
import sys
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from uft.atomic_files import write_atomic


class PredictionCSV(BasePredictionWriter):
    """Streams ``uft predict``'s answers to ``predictions.csv`` in the run's log folder as each batch is done
    (nothing is kept in memory), and says where in one line. One row per image, in sample order:

    ``index`` (sample index), ``path`` (as the data gave it), ``pred`` (class name, or ``unknown``), ``pred_id``
    (-1 for unknown), ``score`` (the OOD score), ``known_prob`` (softmax probability of the top class), ``top5``
    (the five most likely class names, ``;``-separated).

    On several processes each writes its own part, and process 0 merges the parts in sample order at the end.

    Args:
        filename: name of the file inside the log directory.
    """

    COLUMNS = ("index", "path", "pred", "pred_id", "score", "known_prob", "top5")

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self._handle = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a broadcast under DDP: every process reads it
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.filename
        self._part = folder / f"{self.filename}.rank{trainer.global_rank}.part"
        self._paths = trainer.datamodule.predict_paths()
        self._names = list(pl_module.hparams.class_names)
        self._handle = open(self._part, "w", newline="")
        self._writer = csv.writer(self._handle)
        self._rows = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        columns = [prediction[key].tolist() for key in ("index", "pred_id", "score", "known_prob", "top5")]
        for index, pred_id, score, known_prob, top5 in zip(*columns):
            name = "unknown" if pred_id < 0 else self._names[pred_id]
            top = ";".join(self._names[k] for k in top5)
            self._writer.writerow([index, self._paths[index], name, pred_id, f"{score:.6g}", f"{known_prob:.6g}", top])
        self._rows += len(columns[0])
        self._handle.flush()

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._handle.close()
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            parts = sorted(self.path.parent.glob(f"{self.filename}.rank*.part"))
            count = 0

            def merge(out) -> None:  # the processes' rows, in sample order
                nonlocal count
                handles = [open(part, newline="") for part in parts]
                try:
                    writer = csv.writer(out)
                    writer.writerow(self.COLUMNS)
                    for row in heapq.merge(*(csv.reader(h) for h in handles), key=lambda row: int(row[0])):
                        writer.writerow(row)
                        count += 1
                finally:
                    for handle in handles:
                        handle.close()

            try:
                write_atomic(self.path, merge)
            finally:
                for part in parts:
                    part.unlink(missing_ok=True)
            print(f"uft: wrote {count} predictions to {self.path}", file=sys.stderr, flush=True)
        trainer.strategy.barrier()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # A failed prediction (a full disk, an unreadable share of images) leaves no part behind.
        handle = getattr(self, "_handle", None)
        if handle is not None and not handle.closed:
            handle.close()
            self._part.unlink(missing_ok=True)
