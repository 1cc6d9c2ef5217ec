"""The batch a loader yields: an explicit readable column, and whether every image was read, known on the host."""

from __future__ import annotations

import dataclasses

import torch
from lightning.pytorch.utilities import move_data_to_device

from uft.data.batch import Batch, collate


def items(readable: list[bool], labels: bool = False) -> list[dict]:
    out = []
    for i, ok in enumerate(readable):
        item = {"image": torch.full((3, 2, 2), float(i)), "index": 10 + i, "readable": ok}
        out.append({**item, "label": i % 2} if labels else item)
    return out


def test_collate_keeps_the_columns_and_decides_all_readable_on_the_host():
    batch = collate(items([True, True, True]))
    assert batch.index.tolist() == [10, 11, 12] and batch.labels is None
    assert batch.all_readable is True and batch.unreadable_indices() == []
    assert batch.readable_rows() is batch  # nothing to drop: no copy, no device wait
    labeled = collate(items([True, False, True], labels=True))
    assert labeled.all_readable is False and labeled.labels.tolist() == [0, 1, 0]
    assert labeled.unreadable_indices() == [11]


def test_readable_rows_drop_exactly_the_unreadable_images():
    batch = collate(items([False, True, False, True], labels=True))
    kept = batch.readable_rows()
    assert kept.index.tolist() == [11, 13] and kept.labels.tolist() == [1, 1]
    assert torch.equal(kept.images, batch.images[[1, 3]])
    assert kept.all_readable and bool(kept.readable.all())


def test_lightning_moves_the_tensors_and_keeps_the_host_flag():
    """Lightning's batch transfer (a dataclass, field by field): the flag stays a plain bool, not a tensor."""
    batch = collate(items([True, False]))
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, Batch) and moved.all_readable is False
    assert [f.name for f in dataclasses.fields(moved)] == ["images", "index", "readable", "labels", "all_readable"]
    assert torch.equal(moved.to("cpu").index, batch.index)
