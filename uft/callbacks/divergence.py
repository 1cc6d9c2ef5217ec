"""Stopping a run at the step its loss or trained parameters stop being finite."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from uft.checkpoint_contents import trained_parameters
from uft.errors import Diverged


class DivergenceWatch(Callback):
    """Stops training with :class:`~uft.errors.Diverged` when a step's loss, or the trained parameters after it, are
    not finite, naming the step, the learning rates and the last finite loss.

    Each step's check is queued on the device and read at the next step: reading a device value waits for the
    device, and waiting for the step just queued would leave it idle while the next one is prepared. The loss is the
    same on every process, and so are the parameters: every process stops at the same step.

    The checkpoint callback asks :meth:`confirm_finite` before each save, so that no non-finite state is saved and a
    diverged run keeps a checkpoint whose next loss was finite; ``finite_through`` says up to which step that is
    known.
    """

    def __init__(self) -> None:
        self.finite_through: int | None = None  # the last step whose loss (and the state after it) was read finite
        self._last_finite: tuple[int, Tensor] | None = None  # (step, loss), for the message
        self._step: tuple[int, str] | None = None  # (step, learning rates) of the running step
        self._running: tuple[int, Tensor, str] | None = None  # (step, loss, rates) of the last step taken
        self._queued: tuple[int, Tensor, Tensor, str] | None = None  # its check, unread: (step, finite?, loss, rates)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finite_through, self._last_finite, self._step, self._running, self._queued = None, None, None, None, None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        # The rates this step uses: the scheduler moves them before `on_train_batch_end`.
        rates = ", ".join(f"{g.get('name', i)} {g['lr']:.3g}" for i, g in enumerate(trainer.optimizers[0].param_groups))
        self._step = (trainer.global_step, rates)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # After the optimiser step; before the checkpoint callback's hook (Lightning runs checkpoint callbacks last).
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or self._step is None:
            return  # no step (nothing readable in the batch)
        step, rates = self._step
        self._running = (step, loss.detach(), rates)
        if self._read_through(step):
            return  # read already (`confirm_finite`)
        previous, self._queued = self._queued, self._queue(pl_module)
        if previous is not None:
            self._read(pl_module, previous)

    def confirm_finite(self, pl_module: LightningModule) -> int | None:
        """Reads now, waiting for the device, whether the last step's loss and the parameters after it are finite
        (and every check queued before it); raises :class:`~uft.errors.Diverged` if not. Returns
        ``finite_through``: the last step whose loss was seen finite, so the state that step started from is one a
        checkpoint may keep (``None`` before the first step of this run)."""
        self._flush(pl_module)
        if self._running is not None and not self._read_through(self._running[0]):
            self._read(pl_module, self._queue(pl_module))
        return self.finite_through

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._flush(pl_module)  # validation within fit runs before the training epoch ends

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(pl_module)

    def _read_through(self, step: int) -> bool:
        return self.finite_through is not None and self.finite_through >= step

    def _queue(self, pl_module: LightningModule) -> tuple[int, Tensor, Tensor, str]:
        step, loss, rates = self._running
        finite = torch.stack(
            [torch.isfinite(loss), *(torch.isfinite(p).all() for p in trained_parameters(pl_module).values())]
        )
        return step, finite.all(), loss, rates

    def _flush(self, pl_module: LightningModule) -> None:
        pending, self._queued = self._queued, None
        if pending is not None:
            self._read(pl_module, pending)

    def _read(self, pl_module: LightningModule, check: tuple[int, Tensor, Tensor, str]) -> None:
        step, finite, loss, rates = check
        if bool(finite):
            self._last_finite, self.finite_through = (step, loss), step
            return
        self._queued = None
        if not bool(torch.isfinite(loss)):
            raise Diverged(self._message(step, rates, f"the loss is {float(loss)}"))
        bad = [name for name, p in trained_parameters(pl_module).items() if not torch.isfinite(p).all()]
        raise Diverged(self._message(step, rates, f"the parameters {', '.join(bad[:3])} are no longer finite"))

    def _message(self, step: int, rates: str, what: str) -> str:
        last = self._last_finite
        before = f"; last finite loss {float(last[1]):.6g} at step {last[0]}" if last else ""
        return (
            f"training diverged at step {step}: {what} (learning rates: {rates}{before}); lower "
            "model.prompt_lr / model.visual_lr"
        )
