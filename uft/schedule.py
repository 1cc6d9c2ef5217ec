"""The default learning-rate schedule: cosine annealing to zero over the run, planned when its length is known."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


class CosineToZero(LRScheduler):
    """``lr = base * (1 + cos(pi * step / T)) / 2`` over the ``T`` optimiser steps of the run, stepped every step.

    ``T`` is not known when the optimiser is built (the length of a resumed run is read once its checkpoint and the
    loader's place are restored): :meth:`plan` sets it, at any step, and the rates follow at once. Until then the
    factor is 1. ``T`` is part of the ``state_dict``, so a resumed run knows what it was planned over and can say
    when that changed (``max_epochs`` or the batch size).

    Args:
        optimizer: the optimiser whose groups' rates it sets.
        total: ``T``, if known already.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total: int | None = None, last_epoch: int = -1) -> None:
        self.total = total
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """The factor on the base rates at ``step``."""
        total = self.total
        return 1.0 if not total else 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def plan(self, total: int) -> int | None:
        """Anneal over ``total`` steps from the step it is at; returns the length planned before (``None``: none)."""
        before, self.total = self.total, max(int(total), 1)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        return before


def plan_schedule(scheduler: object, total: int) -> str | None:
    """Plan a :class:`CosineToZero` over the run's ``total`` optimiser steps, known once a resumed run's place is
    restored (another scheduler plans itself); returns what to tell the user when a resumed run's length changed
    (``max_epochs``, batch size): the schedule is re-planned from the step it is at."""
    if not isinstance(scheduler, CosineToZero):
        return None
    total = max(int(total), 1)
    before = scheduler.plan(total)
    if before is None or before == total:
        return None
    step = scheduler.last_epoch
    return (
        f"uft: the run now has {total} optimiser steps instead of {before} (max_epochs or batch size changed): the "
        f"cosine schedule is re-planned over {total} steps from step {step} (learning-rate factor now "
        f"{scheduler.factor(step):.3f})"
    )
