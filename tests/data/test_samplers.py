"""The global batch sampler's order."""

from __future__ import annotations

import torch

from uft.data.samplers import GlobalBatchSampler


def test_epoch_sampler_order():
    """The order depends only on (seed, epoch): equal for equal pairs, different across epochs and seeds."""

    def order(seed, epoch):
        sampler = GlobalBatchSampler(50, 10, seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(0, 0)
    assert sorted(i for i, _ in first) == list(range(50))
    assert all(e == 0 for _, e in first)
    torch.manual_seed(123)  # the global random state plays no part
    assert order(0, 0) == first
    assert [i for i, _ in order(0, 1)] != [i for i, _ in first]
    assert all(e == 1 for _, e in order(0, 1))
    assert [i for i, _ in order(1, 0)] != [i for i, _ in first]
    assert [i for i, _ in GlobalBatchSampler(50, 10, 0, shuffle=False)] == list(range(50))
