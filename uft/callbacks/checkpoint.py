"""The run's checkpoint: one ``last.ckpt``, written whole, on a cadence, exact to resume from."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from uft.atomic_files import write_error
from uft.callbacks.divergence import DivergenceWatch
from uft.checkpoint_contents import trained_parameters
from uft.distributed import sum_over_processes, world_size
from uft.errors import Diverged
from uft.loop_progress import EPOCH_END_KEY, align_progress, loader_state, saved_epoch_batches


def _watch(trainer: Trainer) -> DivergenceWatch | None:
    """The run's divergence watch, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, DivergenceWatch)), None)


class RunCheckpoint(ModelCheckpoint):
    """One ``last.ckpt`` per run folder, fresh enough that a killed job loses little, and exact to resume from.

    ``<default_root_dir>/checkpoints/last.ckpt`` is rewritten at the end of every epoch, after every
    ``every_n_minutes`` of training, every ``every_n_train_steps`` optimiser steps if set, and when the run is
    stopped by a signal. Each save is written beside the file and then renamed
    over it, so a kill during a save leaves the previous checkpoint whole. Saves happen only between steps, so a
    checkpoint always holds a consistent state: parameters, optimiser, scheduler, per-sample table and the
    loader's place in the epoch.

    A checkpoint is one a run can resume from only if training on from it goes on: when the run diverges (a
    non-finite loss), ``last.ckpt`` holds the last saved state whose next step's loss was seen finite. Each save
    first reads that check for the state it replaces (one wait for the device per save); a replaced state whose
    next loss was finite is kept as ``checked.ckpt`` (a hard link: no copy) until the run ends, and put back as
    ``last.ckpt`` if the newer one turns out to be the state that diverged.

    A graceful stop (:class:`~uft.callbacks.stop.GracefulStop`) saves through :meth:`save_now`. There is never a
    ``last-v1.ckpt``: the CLI refuses to start a new run over an earlier run's checkpoint (see ``uft fit --help``,
    ``--fresh``).

    Args:
        dirpath: checkpoint folder; default ``<trainer.default_root_dir>/checkpoints``.
        every_n_minutes: also save after this much training time since the last save (counted in steps of the
            duration the first step after each save took); ``None``: off. The default,
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
        self._saved_at = (0.0, 0)  # (time, step) of the last save, or of the start of training
        self._late_step: int | None = None  # when the next save for `every_n_minutes` is due, once planned
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
        self._saved_at, self._late_step = (time.monotonic(), trainer.global_step), None
        last = self.last_path(trainer)
        resumed = trainer.ckpt_path is not None and Path(trainer.ckpt_path).resolve() == last.resolve()
        self._saved_step, self._checked_step = (trainer.global_step if resumed else None), None
        self._drop_checked(trainer)  # one left by a run killed without warning: it is not this run's

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._drop_checked(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        due = bool(self.save_every_n_steps) and trainer.global_step % self.save_every_n_steps == 0
        if due or self._late(trainer.global_step, pl_module.device):
            self._save_last(trainer)

    def _late(self, step: int, device: torch.device) -> bool:
        """Whether ``every_n_minutes`` of training passed since the last save. Every process takes part in a save,
        so all must decide alike, yet agreeing every step would cost a collective (and a device wait) per step:
        after the first step since the last save, the step at which the time is up is planned from that step's
        duration (the processes' mean: one collective per save), and every process saves at that step."""
        if self.every_n_minutes is None or step <= self._saved_at[1]:
            return False
        if self._late_step is None:
            start_time, start_step = self._saved_at
            seconds = torch.tensor([(time.monotonic() - start_time) / (step - start_step)], device=device)
            per_step = float(sum_over_processes(seconds)) / world_size()
            self._late_step = start_step + max(1, math.ceil(60 * self.every_n_minutes / max(per_step, 1e-9)))
        return step >= self._late_step

    def save_now(self, trainer: Trainer) -> str:
        """Save ``last.ckpt`` now (between steps; every process calls it), unless this step is saved already;
        returns its path."""
        self._save_last(trainer)
        return self.last_model_path

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
            align_progress(checkpoint, saved_epoch_batches(state, trainer.limit_train_batches))
        checkpoint[EPOCH_END_KEY] = self._epoch_end

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        state = loader_state(checkpoint)
        if state is None:
            return
        disagreed = align_progress(checkpoint, saved_epoch_batches(state, trainer.limit_train_batches))
        if disagreed and trainer.state.fn == "fit":
            rank_zero_info(
                f"uft: the checkpoint's loop counters disagreed with its training loader's place ({disagreed}; "
                "written by an earlier uft): resuming at the loader's place"
            )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # saves happen at the end of the training epoch, never in the middle of an evaluation

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # No save: a failure may strike in the middle of a step, so the last consistent save is kept.
        if isinstance(exception, Diverged) and self._saved_step is not None:
            watch = _watch(trainer)
            exception.checkpoint = self._keep_checked(trainer, watch.finite_through if watch else None)
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
        module, watch = trainer.lightning_module, _watch(trainer)
        # Raises (the run stops) if the running step diverged; the state saved before becomes a checked one when
        # the loss computed on it was finite.
        finite_through = watch.confirm_finite(module) if watch else None
        if not all(bool(torch.isfinite(p).all()) for p in trained_parameters(module).values()):
            return  # a diverged state never replaces the last good checkpoint (the watch stops the run)
        if self._next_loss_seen(finite_through) and self._saved_step != trainer.global_step:
            if trainer.is_global_zero:  # hard link: the file that the save below replaces lives on as checked.ckpt
                linked = self.checked_path().with_suffix(".part")
                linked.unlink(missing_ok=True)
                os.link(self.last_path(trainer), linked)
                os.replace(linked, self.checked_path())
            self._checked_step = self._saved_step
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._saved_step = trainer.global_step
        self._saved_at, self._late_step = (time.monotonic(), trainer.global_step), None

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
