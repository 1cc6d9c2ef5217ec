"""Stopping a run gracefully on a signal: at a step boundary, on every process, with a checkpoint; under SLURM,
requeued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from uft.distributed import any_process


class GracefulStop(Callback):
    """SIGTERM, Ctrl-C (SIGINT; a second Ctrl-C aborts at once) and SIGUSR1 stop training at the end of the current
    step, on every process at the same step (a signal to any one process is enough), save ``last.ckpt`` through the
    run's checkpoint callback, and exit with status 143 (the CLI's). Under SLURM, SIGUSR1
    (``#SBATCH --signal=SIGUSR1@90``) also requeues the job (``scontrol requeue``), which continues with
    ``--ckpt_path last``. A signal during an evaluation takes effect at the next training step. The handlers are
    installed for ``fit`` only, and the previous ones restored when it ends.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self) -> None:
        self._handlers: dict[int, object] = {}
        self._signal = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._signal = 0
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGINT:
            if self._signal:
                signal.default_int_handler(signum, frame)  # a second Ctrl-C aborts at once
            print("uft: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        self._signal = self._signal or signum

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        # Every process stops at the same step, and takes part in the save: agree in one collective.
        if not any_process(bool(self._signal), pl_module.device):
            return
        checkpoint = trainer.checkpoint_callback
        saved = checkpoint.save_now(trainer) if hasattr(checkpoint, "save_now") else None
        rank_zero_info(f"uft: stopped; checkpoint {saved} resumes with --ckpt_path last" if saved else "uft: stopped")
        if self._signal == signal.SIGUSR1 and trainer.is_global_zero and "SLURM_JOB_ID" in os.environ:
            self._requeue()
        raise SIGTERMException  # Lightning's own way out of `fit` (the CLI exits with status 143)

    @staticmethod
    def _requeue() -> None:
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        subprocess.run(["scontrol", "requeue", f"{job}_{task}" if task else job], check=False)

    def _restore_handlers(self) -> None:
        # Before Lightning's teardown restores its own: the process must answer SIGTERM normally after `fit`.
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
