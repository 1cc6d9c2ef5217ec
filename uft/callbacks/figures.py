"""Pictures of the last evaluation, and its per-sample scores."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from uft.atomic_files import write_bytes, write_error
from uft.per_class import per_class_table, write_per_class_csv


class EvaluationFigures(Callback):
    """PNG pictures of the last evaluation in ``<log dir>/figures/`` at the end of ``validate``, ``test`` and ``fit``
    (after its final evaluation): the ROC curve of each split (known vs unknown), the histogram of the OOD score of
    known and unknown images with the unknown decision's threshold, per-class accuracy, and the reliability diagram
    of the known-class images (``<split>_reliability.png``). Also ``scores.pt`` (``num_known``, ``class_names``, and
    per split: OOD scores, predictions, labels, threshold, confidences and true-class log-probabilities at the
    training scale, the number of calibration bins) for pictures across runs, ``per_class.csv`` (each split's
    per-class report, :mod:`uft.per_class`), and the figures in TensorBoard when that is the logger. Written by
    process 0.

    Args:
        folder: sub-folder of the log directory for the pictures.
    """

    def __init__(self, folder: str = "figures") -> None:
        self.folder = folder

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = getattr(getattr(pl_module, "evaluation", None), "results", None)
        if trainer.sanity_checking or not results:
            return
        self._write_files(trainer, Path(trainer.log_dir or trainer.default_root_dir), results, pl_module)

    @rank_zero_only
    def _write_files(self, trainer: Trainer, log_dir: Path, results: dict, pl_module: LightningModule) -> None:
        from uft.figures import evaluation_figures, save_figures

        class_names = list(pl_module.hparams.class_names)
        figures = evaluation_figures(results, class_names)
        save_figures(figures, log_dir / self.folder)
        scores = io.BytesIO()
        torch.save({"num_known": len(class_names), "class_names": class_names, "splits": results}, scores)
        write_bytes(log_dir / "scores.pt", scores.getvalue())
        write_per_class_csv(log_dir / "per_class.csv", per_class_table(results, class_names))
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_figure"):  # TensorBoard
            try:
                for name, figure in figures.items():
                    experiment.add_figure(f"eval/{name}", figure, global_step=trainer.global_step)
                experiment.flush()  # its writer thread's failure (a full disk) surfaces here, with the folder named
            except OSError as err:
                raise write_error(f"{experiment.get_logdir()} (TensorBoard events)", err) from None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != "fit":  # during fit: once, at its end
            self._write(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module)
