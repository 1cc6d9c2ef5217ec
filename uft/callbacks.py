"""Callbacks of the harness: checkpoints a later run can resume from, the run summary ``metrics.json``, and the
predictions file ``predictions.csv``."""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from uft.atomic_files import write_atomic, write_bytes, write_error, write_text
from uft.distributed import sum_over_processes
from uft.errors import Diverged
from uft.loop_progress import EPOCH_END_KEY, align_progress, batches_per_epoch, loader_state


class RunCheckpoint(ModelCheckpoint):
    """One ``last.ckpt`` per run folder, fresh enough that a killed job loses little, and exact to resume from.

    ``<default_root_dir>/checkpoints/last.ckpt`` is rewritten at the end of every epoch, after every
    ``every_n_minutes`` of training, every ``every_n_train_steps`` optimiser steps if set, and when the run is
    stopped by SIGTERM, Ctrl-C or SLURM's pre-emption signal. Each save is written beside the file and then renamed
    over it, so a kill during a save leaves the previous checkpoint whole. Saves happen only between steps, so a
    checkpoint always holds a consistent state: parameters, optimiser, scheduler, per-sample table and the
    loader's place in the epoch.

    A checkpoint is one a run can resume from only if training on from it goes on: when the run diverges (a
    non-finite loss), ``last.ckpt`` holds the last saved state whose next step's loss was seen finite. Each save
    first reads that check for the state it replaces (one wait for the device per save); a replaced state whose
    next loss was finite is kept as ``checked.ckpt`` (a hard link: no copy) until the run ends, and put back as
    ``last.ckpt`` if the newer one turns out to be the state that diverged.

    Signals: SIGTERM, Ctrl-C (SIGINT; a second Ctrl-C aborts at once) and SIGUSR1 stop training at the end of the
    current step, on every process at the same step (a signal to any one process is enough), save ``last.ckpt``
    and exit with status 143. Under SLURM, SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``) also requeues the job
    (``scontrol requeue``), which continues with ``--ckpt_path last``. A signal during an evaluation takes effect
    at the next training step. There is never a ``last-v1.ckpt``: the CLI refuses to start a new run over an earlier
    run's checkpoint (see ``uft fit --help``, ``--fresh``).

    Args:
        dirpath: checkpoint folder; default ``<trainer.default_root_dir>/checkpoints``.
        every_n_minutes: also save after this much training time since the last save; ``None``: off. The default,
            2, bounds what a job killed without warning (SIGKILL, out of memory, a lost node) loses to 2 minutes;
            a checkpoint holds only the trained parameters and the table, so a save costs well under a second.
        every_n_train_steps: also save every this many optimiser steps; ``None``: off.
    """

    def __init__(
        self, dirpath: str | None = None, every_n_minutes: float | None = 2.0, every_n_train_steps: int | None = None
    ) -> None:
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, enable_version_counter=False)
        self.every_n_minutes = every_n_minutes
        self.save_every_n_steps = every_n_train_steps
        self._last_save_time = 0.0
        self._handlers: dict[int, object] = {}
        self._stop_signal = 0
        self._saved_step: int | None = None  # of the state in last.ckpt, when this run wrote or resumed it
        self._checked_step: int | None = None  # of the state in checked.ckpt, written by this run
        self._epoch_end = False  # whether the save being written is the one after the epoch's evaluation

    def checked_path(self) -> Path:
        """Where the last saved state whose next loss was seen finite is kept while ``last.ckpt`` holds a newer one
        (its name does not start with ``last``, so ``--ckpt_path last`` never picks it)."""
        return Path(self.dirpath) / f"checked{self.FILE_EXTENSION}"

    def _default_dir(self, trainer: Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))

    def last_path(self, trainer: Trainer) -> Path:
        """Where ``last.ckpt`` of this run lives."""
        self._default_dir(trainer)
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._default_dir(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        # Called to resolve `ckpt_path="last"` before `setup`.
        self._default_dir(trainer)
        return super()._find_last_checkpoints(trainer)

    # ---------------------------------------------------------------- when to save
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_save_time = time.monotonic()
        self._stop_signal = 0
        last = self.last_path(trainer)
        resumed = trainer.ckpt_path is not None and Path(trainer.ckpt_path).resolve() == last.resolve()
        self._saved_step, self._checked_step = (trainer.global_step if resumed else None), None
        self._drop_checked(trainer)  # one left by a run killed without warning: it is not this run's
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGINT:
            if self._stop_signal:
                signal.default_int_handler(signum, frame)  # a second Ctrl-C aborts at once
            print("uft: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        self._stop_signal = self._stop_signal or signum

    def _restore_handlers(self) -> None:
        # Before Lightning's teardown restores its own: the process must answer SIGTERM normally after `fit`.
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_handlers()
        self._drop_checked(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        late = self.every_n_minutes is not None and time.monotonic() - self._last_save_time >= 60 * self.every_n_minutes
        # Every process must take part in a save, and stop at the same step: agree on both, in one collective.
        flags = sum_over_processes(torch.tensor([late, bool(self._stop_signal)], device=pl_module.device).float())
        late, stop = bool(flags[0]), bool(flags[1])
        due = bool(self.save_every_n_steps) and trainer.global_step % self.save_every_n_steps == 0
        if due or late or stop:
            self._save_last(trainer)
        if stop:
            rank_zero_info(f"uft: stopped; checkpoint {self.last_model_path} resumes with --ckpt_path last")
            if self._stop_signal == signal.SIGUSR1 and trainer.is_global_zero and "SLURM_JOB_ID" in os.environ:
                self._requeue()
            raise SIGTERMException  # Lightning's own way out of `fit` (the CLI exits with status 143)

    @staticmethod
    def _requeue() -> None:
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        subprocess.run(["scontrol", "requeue", f"{job}_{task}" if task else job], check=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Also when the epoch's last step was saved already: this save marks the epoch finished, evaluation included
        # (a run stopped in its last evaluation resumes to that evaluation, one stopped after it has nothing to do).
        self._epoch_end = True
        try:
            self._save_last(trainer)
        finally:
            self._epoch_end = False
        # Lightning keeps a resumed run's "restarted mid-epoch" state past the epoch it resumed, and then starts the
        # next epochs without counting or announcing them (`on_train_epoch_start`); from here on, epochs are new.
        trainer.fit_loop.reset_restart_stage()

    # ---------------------------------------------------------------- where the run is
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        state = loader_state(checkpoint)
        if state is not None:
            align_progress(checkpoint, self._epoch_batches(trainer, state))
        checkpoint[EPOCH_END_KEY] = self._epoch_end

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        state = loader_state(checkpoint)
        disagreed = align_progress(checkpoint, self._epoch_batches(trainer, state)) if state is not None else None
        if disagreed and trainer.state.fn == "fit":
            rank_zero_info(
                f"uft: the checkpoint's loop counters disagreed with its training loader's place ({disagreed}; "
                "written by an earlier uft): resuming at the loader's place"
            )

    @staticmethod
    def _epoch_batches(trainer: Trainer, state: dict) -> int:
        """The training batches an epoch of the saved run has: its loader's, cut by ``limit_train_batches``."""
        return batches_per_epoch(state["num_samples"] // state["batch_size"], trainer.limit_train_batches)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # saves happen at the end of the training epoch, never in the middle of an evaluation

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # No save: a failure may strike in the middle of a step, so the last consistent save is kept.
        self._restore_handlers()
        if isinstance(exception, Diverged) and self._saved_step is not None:
            exception.checkpoint = self._keep_checked(trainer, getattr(pl_module, "finite_through", None))
        self._drop_checked(trainer)

    def _keep_checked(self, trainer: Trainer, finite_through: int | None) -> str:
        """At divergence: ``last.ckpt`` ends holding the last saved state whose next loss was seen finite, or is
        moved aside as ``diverged.ckpt`` when no saved state qualifies. Says which, for the message."""
        last = self.last_path(trainer)
        if self._next_loss_seen(finite_through):
            return f"{last} holds step {self._saved_step}, the last saved state whose next loss was finite"
        # An existence check: a missing file must not hide the divergence message behind a FileNotFoundError.
        if self._checked_step is not None:
            if trainer.is_global_zero and self.checked_path().exists():
                os.replace(self.checked_path(), last)
            good, bad = "the last saved state whose next loss was finite", f"the one saved at step {self._saved_step}"
            return f"{last} holds step {self._checked_step} again, {good} ({bad} diverged)"
        aside = last.with_name(f"diverged{self.FILE_EXTENSION}")
        if trainer.is_global_zero and last.exists():
            os.replace(last, aside)
        return f"no saved state led to a finite loss: {last} was moved to {aside.name}"

    def _next_loss_seen(self, finite_through: int | None) -> bool:
        """Whether the loss computed on the state in ``last.ckpt`` was seen finite."""
        return self._saved_step is not None and finite_through is not None and self._saved_step <= finite_through

    def _drop_checked(self, trainer: Trainer) -> None:
        if trainer.is_global_zero and self.dirpath is not None:
            self.checked_path().unlink(missing_ok=True)
        self._checked_step = None

    # ---------------------------------------------------------------- how to save
    def _save_last(self, trainer: Trainer) -> None:
        again = self._epoch_end and self._last_global_step_saved == trainer.global_step
        if self._should_skip_saving_checkpoint(trainer) and not (again and trainer.state.fn == "fit"):
            return
        module = trainer.lightning_module
        # Raises (the run stops) if the running step diverged; the state saved before becomes a checked one when
        # the loss computed on it was finite.
        finite_through = module.confirm_finite() if hasattr(module, "confirm_finite") else None
        trained = (p for p in module.parameters() if p.requires_grad)
        if not all(bool(torch.isfinite(p).all()) for p in trained):
            return  # a diverged state never replaces the last good checkpoint (the module stops the run)
        if self._next_loss_seen(finite_through) and self._saved_step != trainer.global_step:
            if trainer.is_global_zero:  # hard link: the file that the save below replaces lives on as checked.ckpt
                linked = self.checked_path().with_suffix(".part")
                linked.unlink(missing_ok=True)
                os.link(self.last_path(trainer), linked)
                os.replace(linked, self.checked_path())
            self._checked_step = self._saved_step
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._saved_step = trainer.global_step
        self._last_save_time = time.monotonic()

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        partial = f"{filepath}.part"
        try:
            super()._save_checkpoint(trainer, partial)
            if trainer.is_global_zero:
                os.replace(partial, filepath)  # atomic: a reader sees the old file or the new one, never half of one
        except OSError as err:  # a full disk or a read-only folder: the earlier checkpoint stays whole
            if trainer.is_global_zero:
                Path(partial).unlink(missing_ok=True)
            raise write_error(filepath, err) from None
        self._last_checkpoint_saved = filepath


class MetricsJSON(Callback):
    """Writes ``metrics.json`` (split -> metric -> value) into the run's log directory after each evaluation,
    so the file holds the final values when the run ends. Undefined values (e.g. AUROC without unknowns) are null.
    On several processes rank 0 writes it (the metrics are already gathered over all processes). At the end of
    ``validate``, ``test`` and ``fit`` it prints the evaluation metrics as one short table: a column per split, a
    row per metric, rates in percent.

    Args:
        filename: name of the file inside the log directory.
        print_table: print that table.
    """

    def __init__(self, filename: str = "metrics.json", print_table: bool = True) -> None:
        self.filename = filename
        self.print_table = print_table

    def _write(self, trainer: Trainer, final: bool) -> None:
        if trainer.sanity_checking:
            return
        # `log_dir` is a broadcast under DDP: every process reads it, only rank 0 writes.
        self._write_summary(trainer, Path(trainer.log_dir or trainer.default_root_dir), final)

    @rank_zero_only
    def _write_summary(self, trainer: Trainer, folder: Path, final: bool) -> None:
        summary: dict[str, dict[str, float | None]] = {}
        for key, value in trainer.callback_metrics.items():
            split, sep, name = key.partition("/")
            if sep:
                value = float(value)
                summary.setdefault(split, {})[name] = None if math.isnan(value) else value
        path = folder / self.filename
        write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if final and self.print_table:
            table = metrics_table({split: values for split, values in summary.items() if split != "train"})
            if table:
                print(f"\n{table}\n(last epoch; {path})", flush=True)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, final=trainer.state.fn != "fit")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, final=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, final=True)


def metrics_table(summary: dict[str, dict[str, float | None]]) -> str:
    """Evaluation metrics as text: a row per metric (each once), a column per split; rates in percent."""
    from uft.metrics import DECISION_NAMES, METRIC_NAMES

    splits = [split for split in summary if summary[split]]
    if not splits:
        return ""
    names = [n for n in (*METRIC_NAMES, *DECISION_NAMES, "samples") if any(n in summary[s] for s in splits)]

    def cell(name: str, value: float | None) -> str:
        if value is None:
            return "n/a"
        if name == "samples":
            return f"{int(value)}"
        return f"{value:.4g}" if name == "threshold" else f"{100 * value:.1f}"

    rows = [["metric", *splits]] + [[n, *(cell(n, summary[s].get(n)) for s in splits)] for n in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    )


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


class EvaluationFigures(Callback):
    """PNG pictures of the last evaluation in ``<log dir>/figures/`` at the end of ``validate``, ``test`` and ``fit``
    (after its final evaluation): the ROC curve of each split (known vs unknown), the histogram of the OOD score of
    known and unknown images with the unknown decision's threshold, and per-class accuracy. Also
    ``scores.pt`` (``num_known``, and per split: OOD scores, predictions, labels, threshold) for pictures across
    runs, and the
    figures in TensorBoard when that is the logger. Written by process 0.

    Args:
        folder: sub-folder of the log directory for the pictures.
    """

    def __init__(self, folder: str = "figures") -> None:
        self.folder = folder

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = getattr(pl_module, "eval_results", None)
        if trainer.sanity_checking or not results:
            return
        self._write_files(trainer, Path(trainer.log_dir or trainer.default_root_dir), results, pl_module)

    @rank_zero_only
    def _write_files(self, trainer: Trainer, log_dir: Path, results: dict, pl_module: LightningModule) -> None:
        from uft.figures import evaluation_figures, save_figures

        figures = evaluation_figures(results, list(pl_module.hparams.class_names))
        save_figures(figures, log_dir / self.folder)
        scores = io.BytesIO()
        torch.save({"num_known": len(pl_module.hparams.class_names), "splits": results}, scores)
        write_bytes(log_dir / "scores.pt", scores.getvalue())
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
