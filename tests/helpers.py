"""Test-only components that the CLI can load by import path."""

from lightning.pytorch import Callback


class StopAfterEpoch(Callback):
    """Simulates an interruption: stops training after the given (0-based) epoch, once its checkpoint is saved.

    Args:
        epoch: last epoch to run.
    """

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            trainer.should_stop = True
