"""Test-only components that the CLI can load by import path."""

import copy
import os
import signal
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback
from torch import Tensor

from uft.data.batch import Batch
from uft.distributed import gather_batch
from uft.objectives import UEO


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
    """Writes, from rank 0, what a run did: the number of processes, the trained parameters as training started and
    at its end, the loss of every step and the per-sample table, to ``path`` (``torch.save``), so that runs on
    different numbers of processes can be compared.

    Args:
        path: output file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.losses: list[float] = []
        self.indices: list[list[int]] = []
        self.first_step = 0
        self.initial: dict[str, Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.first_step = trainer.global_step
        self.initial = trained_parameters(pl_module)  # before the first step (a resumed run: the checkpoint's)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.indices.append(gather_batch(batch.index).tolist())  # the global batch's sample indices

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            table = None if pl_module.target_table is None else pl_module.target_table.cpu()
            record = {"losses": self.losses, "params": trained_parameters(pl_module), "table": table}
            record.update(initial=self.initial, world_size=trainer.world_size)
            torch.save({**record, "indices": self.indices, "first_step": self.first_step}, self.path)


def trained_parameters(module: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the parameters training changes, by name, on the CPU."""
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}


class LogBatches(Callback):
    """Appends, from rank 0, one line per finished training step to ``path``: ``epoch step index index ...`` (the
    global batch's sample indices), flushed to disk at once, so that the steps of a run killed with SIGKILL can be
    counted afterwards.

    Args:
        path: the log file (appended to).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        indices = gather_batch(batch.index).tolist()
        if trainer.global_rank == 0:
            with open(self.path, "a") as log:
                log.write(f"{trainer.current_epoch} {trainer.global_step - 1} {' '.join(map(str, indices))}\n")
                log.flush()
                os.fsync(log.fileno())


class FailOnRank(Callback):
    """Makes one process of a multi-process run die at a training step: ``raise`` an exception or ``kill`` itself
    with SIGKILL (no clean-up at all). Every process writes its pid to ``<pid_dir>/rank<r>.pid`` first.

    Args:
        rank: the process that dies.
        step: the training step (0-based) at which it dies.
        how: ``raise`` or ``kill``.
        pid_dir: folder for the pid files; none to skip them.
    """

    def __init__(self, rank: int = 1, step: int = 1, how: str = "raise", pid_dir: str | None = None) -> None:
        self.rank, self.step, self.how, self.pid_dir = rank, step, how, pid_dir

    def on_train_start(self, trainer, pl_module) -> None:
        if self.pid_dir:
            Path(self.pid_dir, f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank != self.rank or trainer.global_step != self.step:
            return
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"deliberate failure of rank {self.rank} at step {self.step}")


class SlowSteps(Callback):
    """Sleeps before every training step, so that a test can signal a run while it trains; writes the pid of each
    process to ``<pid_dir>/rank<r>.pid`` when training starts, and rank 0 the number of finished steps to
    ``<pid_dir>/steps`` after each step.

    With ``eval_seconds``, it also sleeps before every evaluation batch of ``fit``, and rank 0 writes the epoch to
    ``<pid_dir>/evaluating`` when such an evaluation starts (and removes it after every step), so that a test can
    signal a run in the middle of the evaluation that follows a given step.

    Args:
        seconds: sleep per step.
        pid_dir: folder for the pid and step files.
        eval_seconds: sleep per evaluation batch within ``fit``.
    """

    def __init__(self, seconds: float = 0.5, pid_dir: str = ".", eval_seconds: float = 0.0) -> None:
        self.seconds, self.pid_dir, self.eval_seconds = seconds, pid_dir, eval_seconds

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.eval_seconds and trainer.global_rank == 0 and trainer.state.fn == "fit":
            partial = Path(self.pid_dir, "evaluating.part")
            partial.write_text(str(trainer.current_epoch))
            os.replace(partial, Path(self.pid_dir, "evaluating"))

    def on_validation_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.state.fn == "fit":
            time.sleep(self.eval_seconds)

    def on_train_start(self, trainer, pl_module) -> None:
        Path(self.pid_dir, f"rank{trainer.global_rank}.pid").write_text(str(os.getpid()))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        time.sleep(self.seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0:  # written beside, then renamed: a reader never sees an empty file
            # Removed before the step count is written: a marker seen after step n is of an evaluation after it.
            Path(self.pid_dir, "evaluating").unlink(missing_ok=True)
            partial = Path(self.pid_dir, "steps.part")
            partial.write_text(str(trainer.global_step))
            os.replace(partial, Path(self.pid_dir, "steps"))


class BlowUpAt(Callback):
    """Sets every learning rate to ``lr`` from training step ``step`` on: a run that diverges mid-way.

    Args:
        step: first step with the huge rate.
        lr: the rate.
    """

    def __init__(self, step: int = 3, lr: float = 1e30) -> None:
        self.step, self.lr = step, lr

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = self.lr


class RecordingUEO(UEO):
    """UEO that keeps a detached copy of what the module passes it at every training step: ``calls`` holds one
    ``(logits, table, cosine)`` per call, the loss is UEO's.

    Args:
        trade: weight of the marginal-entropy term.
        tau: temperature of the confidence weights.
    """

    def __init__(self, trade: float = 1.0, tau: float = 1.0) -> None:
        super().__init__(trade=trade, tau=tau)
        self.calls: list[tuple[Tensor, Tensor | None, Tensor | None]] = []

    def forward(self, logits: Tensor, weights: Tensor | None = None, cosine: Tensor | None = None) -> Tensor:
        self.calls.append(tuple(None if x is None else x.detach().clone() for x in (logits, weights, cosine)))
        return super().forward(logits, weights, cosine)


class RecordTrainingInputs(Callback):
    """Keeps a copy of the module's CLIP as training starts (before any optimiser step: the zero-shot weights) and
    of every training batch as the module receives it, in ``clip`` and ``batches`` (one process only)."""

    def __init__(self) -> None:
        self.clip: torch.nn.Module | None = None
        self.batches: list[Batch] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.clip = copy.deepcopy(pl_module.clip)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(Batch(batch.images.clone(), batch.index.clone(), batch.readable.clone()))


EVALUATION_FIGURES = [
    "roc.png",
    "target_per_class.png",
    "target_reliability.png",
    "target_scores.png",
    "test_per_class.png",
    "test_reliability.png",
    "test_scores.png",
]


def assert_evaluation_figures(folder, min_bytes: int = 0) -> None:
    """The pictures of an evaluation of the test and target splits: all there, and valid PNGs (PIL opens them)."""
    from PIL import Image

    assert sorted(p.name for p in folder.glob("*.png")) == EVALUATION_FIGURES
    for png in folder.glob("*.png"):
        assert png.stat().st_size > min_bytes
        with Image.open(png) as picture:
            picture.verify()


class StopAtStep(Callback):
    """Ends ``fit`` once ``step`` optimiser steps are done (Lightning then saves ``last.ckpt`` at that step): the
    state an uninterrupted run of the same length passes through.

    Args:
        step: global step to stop at.
    """

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def printed_config(args: list[str], capsys) -> dict:
    """The configuration `uft fit <args> --print_config` prints, as a dict (``capsys``: the test's fixture)."""
    import pytest
    import yaml

    from uft.cli import cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def one_line(command, args: list[str], capsys) -> str:
    """The one line ``command(args)`` (a console command's ``main``) ends with, status 2, without the prefix."""
    import pytest

    with pytest.raises(SystemExit) as exit_status:
        command(args)
    stderr = capsys.readouterr().err
    assert exit_status.value.code == 2 and stderr.count("\n") == 1 and stderr.startswith("uft: error: "), stderr
    return stderr.strip().removeprefix("uft: error: ")
