"""When `last.ckpt` is written: the time-based cadence is planned in steps, alike on every process."""

from __future__ import annotations

import torch

from uft.callbacks import checkpoint as checkpoint_module
from uft.callbacks.checkpoint import RunCheckpoint
from uft.cli import cli_main

from .args import demo_args

CPU = torch.device("cpu")


def test_the_time_for_a_save_is_planned_in_steps_from_the_first_step(monkeypatch):
    """The first step after a save took 2 s, so 1 minute is 30 steps: the save is due at step 10 + 30, whatever the
    clock reads later (every process decides by the step, with no collective per step)."""
    clock = [100.0]
    monkeypatch.setattr(checkpoint_module.time, "monotonic", lambda: clock[0])
    saver = RunCheckpoint(every_n_minutes=1.0)
    saver._saved_at = (100.0, 10)
    assert not saver._late(10, CPU)  # no step since the save: nothing measured yet
    clock[0] = 102.0
    assert not saver._late(11, CPU) and saver._late_step == 40
    clock[0] = 10_000.0
    assert not saver._late(39, CPU)
    assert saver._late(40, CPU)
    assert not RunCheckpoint(every_n_minutes=None)._late(1_000, CPU)


def test_a_short_cadence_saves_between_the_steps_of_an_epoch(shapes_dir, tmp_path, monkeypatch):
    """42 images in global batches of 16 are 2 steps an epoch; with a cadence far below a step's duration, every
    step is followed by a save, and every epoch's end by its own (marked) one."""
    steps = []
    original = RunCheckpoint._save_last_checkpoint

    def counting(self, trainer, *args):
        steps.append(trainer.global_step)
        return original(self, trainer, *args)

    monkeypatch.setattr(RunCheckpoint, "_save_last_checkpoint", counting)
    args = demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=3", "--checkpoint.every_n_minutes=1e-9")
    assert cli_main(["fit", *args]).trainer.global_step == 6
    assert steps == [1, 2, 2, 3, 4, 4, 5, 6, 6]
