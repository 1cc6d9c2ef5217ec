"""Online adaptation: one pass over the target stream, each global batch predicted before the model learns from it.

The protocol of test-time adaptation (Tent: Wang et al., ICLR 2021; its CLIP successors), kept honest: the scores
a batch is judged by come from the state *before* its update (evaluate-before-adapt), every image is seen once, in
the order of the target list, and the objective's per-sample table (UEO's confidence weights, UPL's pseudo-labels)
comes from the zero-shot model on the batch itself, so no pass over the whole target set is needed. Plain PyTorch:
:class:`~uft.module.UFTModule` drives it, the data module reads :attr:`OnlineAdaptation.steps_per_batch` and
:attr:`OnlineAdaptation.augment` for its stream (:class:`~uft.data.samplers.StreamSampler`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from uft.errors import InputError
from uft.metrics import open_set_values
from uft.objectives import Objective
from uft.scores import OODScore, ThresholdRule, open_set_decision

RECORD_KEY = "uft_stream_record"  # the predictions made so far along the stream


class OnlineAdaptation(nn.Module):
    """How ``uft fit`` adapts online (``configs/online.yaml``): one pass over the target list in its order.

    For each global batch, the model's cosine similarities under the current state are recorded (its prediction),
    then the objective takes ``steps_per_batch`` optimiser steps on that batch. ``continual`` carries the state
    along the whole stream; ``episodic`` starts every batch from the zero-shot state (prompt context, norm affines
    and the optimiser's state), and ends there.

    Args:
        policy: ``continual`` (the state carries along the stream) or ``episodic`` (back to the zero-shot state
            after every batch).
        steps_per_batch: optimiser steps on each batch (the stream serves each global batch this many times in a
            row; only the first is predicted).
        augment: train on the training transform's random view of each image; default: the evaluation transform,
            one view per image (the prediction is made on the view the objective trains on).
    """

    def __init__(
        self, policy: Literal["continual", "episodic"] = "continual", steps_per_batch: int = 1, augment: bool = False
    ) -> None:
        super().__init__()
        if policy not in ("continual", "episodic"):
            raise InputError(f"model.online.policy must be continual or episodic, got {policy!r}")
        if steps_per_batch < 1:
            raise InputError(f"model.online.steps_per_batch must be 1 or more, got {steps_per_batch}")
        self.policy, self.steps_per_batch, self.augment = policy, steps_per_batch, augment
        self.record = StreamRecord()
        self._count = 0  # how many zero-shot tensors are kept
        self.zero_shot_text: Tensor | None = None  # the class features of the zero-shot prompts, once computed

    def keep_start(self, params: Sequence[Tensor]) -> None:
        """Keep the zero-shot values of the trained parameters (in this order), beside the model: they move with it
        but are not saved (the zero-shot state is rebuilt from the model's configuration)."""
        for i, p in enumerate(params):
            self.register_buffer(f"start_{i}", p.detach().clone(), persistent=False)
        self._count = len(params)

    def start(self) -> list[Tensor]:
        return [getattr(self, f"start_{i}") for i in range(self._count)]

    @torch.no_grad()
    def reset(self, params: Sequence[Tensor], optimizer: torch.optim.Optimizer | None) -> None:
        """Back to the zero-shot state: the parameters to their kept values, the optimiser's state emptied."""
        for p, value in zip(params, self.start(), strict=True):
            p.copy_(value)
        if optimizer is not None:
            optimizer.state.clear()

    @contextlib.contextmanager
    def at_start(self, params: Sequence[Tensor]) -> Iterator[None]:
        """Inside the block the parameters hold their zero-shot values, and after it exactly their own again. Only
        before a step's forward pass: it writes the parameters in place."""
        with torch.no_grad():
            current = [p.detach().clone() for p in params]
            self.reset(params, None)
            try:
                yield
            finally:
                for p, value in zip(params, current):
                    p.copy_(value)

    def position(self, batch_idx: int) -> tuple[int, int]:
        """``(stream batch, repetition)`` of the ``batch_idx``-th training batch of the pass."""
        return divmod(batch_idx, self.steps_per_batch)

    def before_step(self, model, batch, batch_idx: int, optimizer) -> tuple[Tensor | None, Tensor | None]:
        """At the start of a training step, before its forward pass (both write the parameters in place): the
        episodic reset; then, for an objective with a per-sample table, the zero-shot model's image features of the
        batch (``None`` where the image tower is at its zero-shot state: an episodic batch's first step, or no
        visual tuning; the step's own features serve then) and its class features (computed once; not saved: the
        start is rebuilt from the configuration). ``model`` is the :class:`~uft.module.UFTModule`."""
        params = model.adapted_parameters
        fresh = self.policy == "episodic" and self.position(batch_idx)[1] == 0
        if fresh:  # also after a resume: a run stopped after a batch may not have reset yet
            self.reset(params, optimizer)
        if not model.objective.needs_table:
            return None, None
        if self.zero_shot_text is None:
            with self.at_start(params), torch.no_grad():
                self.zero_shot_text = model.text_features()
        visual_tuned = bool(model.visual_norms) and model.visual_norms[0].requires_grad
        if fresh or not visual_tuned:
            return None, self.zero_shot_text
        with self.at_start(params), torch.no_grad():
            return model.image_features(batch.images), self.zero_shot_text

    def after_step(self, params: Sequence[Tensor], batch_idx: int, optimizer) -> None:
        """Episodic: back to the zero-shot state after a batch's last step."""
        if self.policy == "episodic" and self.position(batch_idx)[1] == self.steps_per_batch - 1:
            self.reset(params, optimizer)

    def real_rows(self, batch_idx: int, cosine: Tensor, index: Tensor, zero_shot: Tensor | None):
        """The global batch's rows that are stream samples: the stream's last batch is padded to a full one
        (:class:`~uft.data.samplers.StreamSampler`), and the pads come last."""
        rows = min(len(index), self.record.num_samples - self.position(batch_idx)[0] * len(index))
        return cosine[:rows], index[:rows], None if zero_shot is None else zero_shot[:rows]

    def predicted(self, batch_idx: int, index: Tensor, cosine: Tensor, score: OODScore, step: int) -> None:
        """Record the model's prediction of these samples, made before the update (at a batch's first step)."""
        if self.position(batch_idx)[1] == 0:
            self.record.write(index, cosine, score, step)


def check_online(online: OnlineAdaptation | None, objective: Objective | None, max_epochs, max_steps, shuffle) -> None:
    """What an online run needs, checked before any work (one line each)."""
    if online is None:
        return
    if objective is not None and objective.uses_labels:
        raise InputError(
            f"{type(objective).__name__} builds its table from the labels of the whole target set; it cannot run "
            "online: remove -c configs/online.yaml or choose another objective"
        )
    if max_epochs != 1 or max_steps not in (-1, None):
        raise InputError(
            f"an online run is one pass over the stream: trainer.max_epochs must be 1 and trainer.max_steps unset, "
            f"got max_epochs={max_epochs}, max_steps={max_steps}"
        )
    if shuffle:
        raise InputError(
            "data.shuffle=true shuffles the stream: an online run reads the target list in its order (set "
            "data.shuffle=false, as configs/online.yaml does)"
        )


class StreamRecord(nn.Module):
    """What the model said of each stream sample before learning from it, by sample index (the stream's order):
    the OOD ``score``, the top class ``pred``, its probability ``known_prob``, the ``top5`` classes and the optimiser
    ``step`` it was predicted at (-1: not yet). Every process records the whole global batch (it has it gathered),
    so the record is the same everywhere; checkpoints keep it, so a resumed stream keeps its predictions exactly
    once."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, Tensor] | None = None
        self.num_classes = 0

    def start(self, num_samples: int, num_classes: int, device: torch.device) -> None:
        """An empty record of ``num_samples`` predictions over ``num_classes`` known classes, unless one over as many
        samples was read from a checkpoint."""
        self.num_classes = num_classes
        if self.values is not None:
            if len(self.values["step"]) != num_samples:
                raise InputError(
                    f"the checkpoint's stream record covers {len(self.values['step'])} images but the target set "
                    f"now has {num_samples}: resume with the data the run started with"
                )
            self.values = {k: v.to(device) for k, v in self.values.items()}
            return
        top = min(5, num_classes)
        self.values = {
            "score": torch.zeros(num_samples, device=device, dtype=torch.float64),
            "pred": torch.zeros(num_samples, device=device, dtype=torch.long),
            "known_prob": torch.zeros(num_samples, device=device),
            "top5": torch.zeros(num_samples, top, device=device, dtype=torch.long),
            "step": torch.full((num_samples,), -1, device=device, dtype=torch.long),
        }

    @property
    def num_samples(self) -> int:
        """How many samples the stream has (once :meth:`start` ran: the target set's)."""
        return len(self.values["step"])

    @torch.no_grad()
    def write(self, index: Tensor, cosine: Tensor, score: OODScore, step: int) -> None:
        """The predictions of these samples from their cosine similarities (N, K), made at optimiser ``step``."""
        decision = open_set_decision(cosine, score, float("-inf"))
        self.values["score"][index] = decision["score"].double()
        self.values["pred"][index] = decision["pred_id"]
        self.values["known_prob"][index] = decision["known_prob"].float()
        self.values["top5"][index] = decision["top5"]
        self.values["step"][index] = step

    def rows(self) -> dict[str, Tensor]:
        """The recorded samples (``step`` >= 0), on the CPU, with their sample ``index``."""
        values = {k: v.cpu() for k, v in self.values.items()}
        seen = values["step"] >= 0
        return {"index": seen.nonzero().squeeze(1), **{k: v[seen] for k, v in values.items()}}

    def metrics(
        self, labels: Tensor, segments: list[tuple[str, range]], rule: ThresholdRule
    ) -> dict[str, dict[str, float]]:
        """The open-set metrics of the recorded predictions (their scores, top classes and ``labels``, the unknown
        decision's threshold by ``rule``), as for an evaluation split (``online``), and of each segment's
        (``online.<name>``). The same on every process, without a collective: every process holds the whole
        record."""
        rows, known = self.rows(), self.num_classes
        parts = {"online": torch.ones(len(rows["index"]), dtype=torch.bool)}
        for name, members in segments:
            parts[f"online.{name}"] = (rows["index"] >= members.start) & (rows["index"] < members.stop)
        return {
            split: open_set_values(rows["score"][keep], rows["pred"][keep], labels[rows["index"][keep]], known, rule)
            for split, keep in parts.items()
            if keep.any()
        }

    def save(self, checkpoint: dict) -> None:
        if self.values is not None:
            checkpoint[RECORD_KEY] = {k: v.cpu() for k, v in self.values.items()}

    def load(self, checkpoint: dict) -> None:
        self.values = checkpoint.get(RECORD_KEY)
