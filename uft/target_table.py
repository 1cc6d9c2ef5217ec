"""The per-sample state of a run over its target set: the objective's table, the samples that never train, and
which target list and objective it belongs to."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from uft.data.batch import Batch
from uft.data.contract import TargetData
from uft.distributed import sum_over_processes
from uft.errors import InputError
from uft.objectives import Objective
from uft.progress import progress

VALUES_KEY = "uft_target_table"  # the objective's per-sample table (UEO: confidence weights)
SOURCE_KEY = "uft_table_source"  # which objective, with which settings, made that table
KEYS_KEY = "uft_target_keys"  # which target list (paths, order, labels) the run trains on


class TargetTable(nn.Module):
    """Per-sample state, by sample index of the target set.

    - ``values``: the objective's table (UEO's confidence weights, UPL's pseudo-labels), built once from a pass over
      the whole target set before the first step (:meth:`build`), read by rows at every step (:meth:`rows`).
    - ``excluded``: samples that never train, because their image could not be read (found before the run, by the
      pass, or in a training batch: :meth:`exclude`).
    - ``keys``: one key per target sample (path and label): a resumed run must train on the same list, since all of
      the above and the loader's place in the epoch are by index.

    A checkpoint holds ``values``, the objective that made them and ``keys`` (:meth:`save`, :meth:`load`); a resume
    with another objective, another list (also of the same size) or another size is refused in one line.
    """

    def __init__(self) -> None:
        super().__init__()
        self.values: Tensor | None = None
        self.source: str | None = None  # `Objective.table_source()` of a table read from a checkpoint
        self.keys: Tensor | None = None
        self.excluded: Tensor | None = None
        self.any_excluded = False  # whether `excluded` holds any, known on the host

    def start(self, data: TargetData, device: torch.device) -> None:
        """At the start of training: the samples already known unreadable, and the check that a resumed run trains
        on the target list it started with (another list of the same size would give each image another's row)."""
        skipped = data.skipped_indices("target")
        self.excluded = torch.zeros(data.num_target_samples, dtype=torch.bool, device=device)
        self.excluded[skipped] = True
        self.any_excluded = bool(skipped)
        keys = data.target_keys()
        saved, self.keys = self.keys, keys
        if saved is None or torch.equal(saved, keys):
            return
        if len(saved) != len(keys):
            raise InputError(
                f"the checkpoint was trained on {len(saved)} target images but the target set now has {len(keys)}: "
                "resume with the data the run started with"
            )
        first = int((saved != keys).nonzero()[0])
        raise InputError(
            f"the target list differs from the one the checkpoint was trained on, first at sample {first}: now "
            f"{data.describe_target(first)}; resume with the list the run started with (the same images, order and "
            "labels), or start afresh with --fresh"
        )

    def check_resumed(self, objective: Objective, num_samples: int) -> None:
        """A table read from a checkpoint was made by this objective, over a target set of this size."""
        if self.source is not None and self.source != objective.table_source():
            raise InputError(
                f"the checkpoint's per-sample table was made by {self.source}, but this run's objective is "
                f"{objective.table_source()}: resume with the objective the run started with"
            )
        if self.values is not None and len(self.values) != num_samples:
            raise InputError(
                f"the checkpoint's per-sample table covers {len(self.values)} target images but the "
                f"target set now has {num_samples}: resume with the data the run started with"
            )

    def prepare(self, objective: Objective, data: TargetData, encode: Callable[[], Tensor]) -> None:
        """The objective's table before the first step: the checkpoint's, when it was made by this objective over
        this target set, else built from ``encode()`` (the pass over the target set: cosine similarities, N x K,
        on every process); images the pass found unreadable are reported to ``data``."""
        self.check_resumed(objective, data.num_target_samples)
        if self.values is None:
            found = self.build(objective, encode(), data.target_labels() if objective.uses_labels else None)
            if found:
                data.report_skipped("target", found)

    def build(self, objective: Objective, cosine: Tensor, labels: Tensor | None) -> list[int]:
        """The objective's table from the pass's cosine similarities (N, K; a NaN row: an unreadable image), over
        the readable samples only (a table may depend on all rows, e.g. UPL's per-class top-k); the rows of excluded
        samples are zero and never read. Returns the samples the pass found unreadable."""
        unreadable = cosine.isnan().any(dim=1)
        found = unreadable.nonzero().squeeze(1).tolist()
        if found:
            self.exclude(unreadable)
        keep = ~self.excluded
        if bool(keep.all()):
            self.values = objective.prepare(cosine, labels)
            return found
        part = objective.prepare(cosine[keep], None if labels is None else labels.to(keep.device)[keep])
        self.values = part.new_zeros((len(cosine), *part.shape[1:]))
        self.values[keep] = part
        return found

    def exclude(self, mask_or_indices: Tensor) -> None:
        """These samples never train from now on (a boolean mask over the target set, or indices)."""
        self.excluded[mask_or_indices] = True
        self.any_excluded = True

    def trainable(self, index: Tensor, readable: Tensor) -> tuple[Tensor, list[int]]:
        """Which rows of a global batch (sample ``index``, ``readable`` images) may train, and the samples found
        unreadable in it, which never train from now on."""
        found = index[~readable]
        if len(found):
            self.exclude(found)
        return ~self.excluded[index], found.tolist()

    def rows(self, index: Tensor) -> Tensor:
        """The table's rows of these samples."""
        return self.values[index]

    def to_device(self, device: torch.device) -> None:
        if self.values is not None:
            self.values = self.values.to(device)

    def save(self, checkpoint: dict, objective: Objective | None) -> None:
        if self.values is not None and objective is not None:
            checkpoint[VALUES_KEY] = self.values.cpu()
            checkpoint[SOURCE_KEY] = objective.table_source()
        if self.keys is not None:
            checkpoint[KEYS_KEY] = self.keys

    def load(self, checkpoint: dict) -> None:
        self.values = checkpoint.get(VALUES_KEY)
        self.source = checkpoint.get(SOURCE_KEY)
        self.keys = checkpoint.get(KEYS_KEY)


def cosine_over(
    loader: Iterable[Batch], shape: tuple[int, int], cosine: Callable[[Tensor], Tensor], device: torch.device
) -> Tensor:
    """The pass over a set of samples: ``cosine(images)`` of every batch ``loader`` yields, each row at its sample
    index, in a table of ``shape`` (samples, classes); the row of an image that could not be read is NaN.

    Each process encodes the samples its ``loader`` yields; rows are summed over processes, so every process ends
    with the whole table. A row that no process, or more than one, filled is an error. A large target set takes a
    while before Lightning's own bar appears: this pass draws its own, on a terminal, on rank 0.
    """
    table = torch.zeros(shape, device=device)
    filled, unreadable = torch.zeros(shape[0], device=device), torch.zeros(shape[0], device=device)
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    with progress(len(loader), "encoding the target set", unit="batch", enabled=rank0) as bar:
        for batch in loader:
            batch = batch.to(device)
            table[batch.index] = cosine(batch.images)
            filled[batch.index] += 1
            unreadable[batch.index] = (~batch.readable).float()  # no boolean mask: no device wait per batch
            bar.update()
    sum_over_processes(table)
    table[sum_over_processes(unreadable) > 0] = float("nan")
    if not bool((sum_over_processes(filled) == 1).all()):
        raise RuntimeError("the pass over the target set must see every sample exactly once")
    return table
