"""Training items of the image-list dataset: seeded by (sample, epoch), the global random state left alone."""

from __future__ import annotations

import torch

from uft.data.datasets import ImageListDataset


def test_train_items_seeded(dm):
    """A train item for (i, epoch) is bit-identical when fetched twice, whatever the global seed; epochs differ."""
    dataset = dm.train_dataloader().dataset
    assert isinstance(dataset, ImageListDataset)
    n = len(dataset)
    torch.manual_seed(1)
    first = [dataset[(i, 0)] for i in range(n)]
    torch.manual_seed(2)
    again = [dataset[(i, 0)] for i in range(n)]
    for a, b in zip(first, again, strict=True):
        assert a["index"] == b["index"] and a["readable"] and "label" not in a
        assert torch.equal(a["image"], b["image"])
    other_epoch = [dataset[(i, 1)]["image"] for i in range(n)]
    assert sum(not torch.equal(a["image"], b) for a, b in zip(first, other_epoch, strict=True)) > n // 2


def test_train_item_leaves_global_rng_alone(dm):
    """Fetching a train item does not change the global torch random state."""
    dataset = dm.train_dataloader().dataset
    torch.manual_seed(7)
    state = torch.get_rng_state()
    dataset[(3, 2)]
    assert torch.equal(torch.get_rng_state(), state)
