"""``uft predict``'s answers, streamed to ``predictions.csv``."""

from __future__ import annotations

import csv
import heapq
import sys
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
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


class StreamPredictionCSV(Callback):
    """An online run's answers (:mod:`uft.online`): ``predictions.csv`` in the run's log folder at the end of the pass,
    one row per stream image in stream order, each as the model said it *before* learning from its batch.

    Columns as :class:`PredictionCSV`'s, plus ``step``: the optimiser step the image was predicted at (the number of
    updates before it). The unknown decision (``pred`` ``unknown``, ``pred_id`` -1) applies the model's
    ``unknown_rule`` to the whole stream's scores, as the ``online`` metrics do. The record it is written from is
    kept in checkpoints, so a stream killed and resumed writes every row exactly once. An image that could not be
    read has no row (it is listed in ``skipped_images.txt``). Process 0 writes it; every process holds the record.

    Args:
        filename: name of the file inside the log directory.
    """

    COLUMNS = (*PredictionCSV.COLUMNS, "step")

    def __init__(self, filename: str = "predictions.csv") -> None:
        self.filename = filename

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        online = getattr(pl_module, "online", None)
        if online is None or online.record.values is None:
            return
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a broadcast under DDP: every process reads it
        if trainer.is_global_zero:
            self.write(folder / self.filename, online.record.rows(), pl_module, trainer.datamodule)

    def write(self, path: Path, rows: dict, pl_module: LightningModule, data) -> None:
        names, paths = list(pl_module.hparams.class_names), data.target_paths()
        threshold = pl_module.unknown_rule.threshold(rows["score"]) if len(rows["score"]) else 0.0
        known = rows["score"] >= threshold

        def lines(out) -> None:
            writer = csv.writer(out)
            writer.writerow(self.COLUMNS)
            columns = [rows[key].tolist() for key in ("index", "pred", "score", "known_prob", "top5", "step")]
            for (index, top, score, prob, top5, step), accepted in zip(zip(*columns), known.tolist()):
                pred_id = top if accepted else -1
                name = names[top] if accepted else "unknown"
                top5 = ";".join(names[k] for k in top5)
                writer.writerow([index, paths[index], name, pred_id, f"{score:.6g}", f"{prob:.6g}", top5, step])

        write_atomic(path, lines)
        print(f"uft: wrote {len(rows['index'])} stream predictions to {path}", file=sys.stderr, flush=True)
