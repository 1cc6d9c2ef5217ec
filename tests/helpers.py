"""Test-only components that the CLI can load by import path."""

import torch
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


class RecordTraining(Callback):
    """Writes, from rank 0, what a run did: the loss of every step, the final trained parameters and the per-sample
    table, to ``path`` (``torch.save``), so that runs on different numbers of processes can be compared.

    Args:
        path: output file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            params = {n: p.detach().cpu().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
            table = None if pl_module.target_table is None else pl_module.target_table.cpu()
            torch.save({"losses": self.losses, "params": params, "table": table}, self.path)
