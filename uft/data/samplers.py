"""Samplers that give every process its share of one global order, so the number of processes changes nothing,
and the training loader that resumes in the middle of an epoch.

Both subclass ``DistributedSampler`` only so that Lightning recognises them as already distributed and leaves them
alone (it would otherwise wrap them and deal every W-th index to each process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler

from uft.errors import InputError


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for the random augmentation of one sample in one epoch, independent of workers and processes."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def per_process_batch(batch_size: int, world_size: int) -> int:
    """``batch_size / world_size``; the global batch must split evenly over the processes."""
    if batch_size < 1 or batch_size % world_size:
        raise InputError(
            f"data.batch_size={batch_size} is the global batch and must divide evenly over the {world_size} "
            f"processes (devices x nodes): use a multiple of {world_size}"
        )
    return batch_size // world_size


class GlobalBatchSampler(DistributedSampler):
    """This process's slices of the global training batches, as ``(index, epoch)`` keys.

    One permutation per epoch, drawn from ``(seed, epoch)`` alone, is cut into global batches of ``batch_size``;
    process ``rank`` takes the ``rank``-th of the ``world_size`` equal slices of each. Batching the yielded keys by
    ``batch_size / world_size`` therefore gives each process its slice of exactly the batches a single process
    would see. Only full global batches are used: the last ``num_samples mod batch_size`` samples of each epoch's
    order (a different set every epoch) wait for a later epoch, so every process holds the same number of equal
    batches. Lightning calls ``set_epoch`` at the start of each epoch; ``skip_batches`` makes the next iteration
    start after that many global batches of the epoch (a run resumed mid-epoch), then resets.

    With ``groups`` (the shard each sample is stored in), the permutation keeps a group's samples together: the
    groups in a random order, each group's samples shuffled within it. A streamed run then reads one shard after
    another instead of every shard at every step; the order still depends only on ``(seed, epoch)`` and the
    grouping, never on the number of processes or loader workers.

    Args:
        num_samples: dataset length.
        batch_size: the global batch size (all processes together).
        seed: base seed of the permutation.
        rank: this process's global rank.
        world_size: number of processes.
        shuffle: draw a permutation (otherwise the identity order).
        groups: the group of each sample (by sample index); ``None`` shuffles all samples together.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        groups: list[int] | None = None,
    ) -> None:
        super().__init__(range(num_samples), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.num_samples = num_samples  # DistributedSampler's per-process count has another meaning; not used
        self.batch_size = batch_size
        self.local_batch_size = per_process_batch(batch_size, world_size)
        self.num_batches = num_samples // batch_size
        self.skip_batches = 0
        self.members: list[list[int]] | None = None
        self.layout: str | None = None  # names the grouping in checkpoints: a mid-epoch resume needs the same one
        if groups is not None:
            if len(groups) != num_samples:
                raise ValueError(f"groups gives {len(groups)} samples a group, the dataset has {num_samples}")
            by_group: dict[int, list[int]] = {}
            for index, group in enumerate(groups):
                by_group.setdefault(group, []).append(index)
            self.members = [by_group[g] for g in sorted(by_group)]
            self.layout = hashlib.blake2b(repr(self.members).encode(), digest_size=8).hexdigest()

    def __len__(self) -> int:
        return self.num_batches * self.local_batch_size

    def global_order(self) -> list[int]:
        """This epoch's order of all sample indices (the same on every process)."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, -1))
        if self.members is None:
            return torch.randperm(self.num_samples, generator=generator).tolist()
        order = []
        for g in torch.randperm(len(self.members), generator=generator).tolist():
            group = self.members[g]
            order.extend(group[i] for i in torch.randperm(len(group), generator=generator).tolist())
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, b = self.global_order(), self.local_batch_size
        first, self.skip_batches = self.skip_batches, 0
        keys = []
        for start in range(first * self.batch_size, self.num_batches * self.batch_size, self.batch_size):
            offset = start + self.rank * b
            keys.extend((i, self.epoch) for i in order[offset : offset + b])
        return iter(keys)


class StreamSampler(GlobalBatchSampler):
    """The online stream: every sample once, in sample-index order (the list's), cut into global batches of
    ``batch_size`` as for training, each served ``repeats`` times in a row (one optimiser step each).

    The last global batch, when the stream does not fill it, is padded to a full one by repeating the stream's last
    sample, so that every process holds equal batches on any number of processes; the pads come last in the global
    batch, and the consumer drops them (:meth:`uft.online.OnlineAdaptation.real_rows`). The order depends on
    nothing but the list. Resuming in the middle of the pass (``skip_batches``) works as for training.

    Args:
        num_samples: dataset length.
        batch_size: the global batch size (all processes together).
        rank: this process's global rank.
        world_size: number of processes.
        repeats: how many times each global batch is served.
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1, repeats: int = 1):
        super().__init__(num_samples, batch_size, seed=0, rank=rank, world_size=world_size, shuffle=False)
        self.repeats = repeats
        self.stream_batches = -(-num_samples // batch_size)
        self.num_batches = self.stream_batches * repeats  # global batches served, repetitions included
        self.layout = f"stream x{repeats}"

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first, self.skip_batches = self.skip_batches, 0
        b, keys = self.local_batch_size, []
        for served in range(first, self.num_batches):
            start = served // self.repeats * self.batch_size
            members = list(range(start, min(start + self.batch_size, self.num_samples)))
            members += [members[-1]] * (self.batch_size - len(members))
            keys.extend((i, self.epoch) for i in members[self.rank * b : (self.rank + 1) * b])
        return iter(keys)


class ResumableLoader(DataLoader):
    """The training ``DataLoader`` over a :class:`GlobalBatchSampler` that knows its place in the epoch.

    Lightning saves ``state_dict()`` in every checkpoint and, on resume, calls ``load_state_dict`` before the first
    batch: the epoch then continues with exactly the global batches an uninterrupted run would have seen next. The
    position counts global batches, so a checkpoint written on W processes resumes on any number of them. A
    changed target set, or a changed batch size or storage layout in the middle of an epoch, is refused.
    """

    sampler: GlobalBatchSampler

    def __init__(self, dataset, sampler: GlobalBatchSampler, **kwargs) -> None:
        super().__init__(dataset, batch_size=sampler.local_batch_size, sampler=sampler, **kwargs)
        self._epoch, self._batches_done = 0, 0

    def __iter__(self):
        self._epoch, self._batches_done = self.sampler.epoch, self.sampler.skip_batches
        for batch in super().__iter__():
            self._batches_done += 1  # counted when handed over: workers may have fetched more
            yield batch

    def state_dict(self) -> dict:
        return {
            "epoch": self._epoch,
            "batches_done": self._batches_done,
            "batch_size": self.sampler.batch_size,
            "num_samples": self.sampler.num_samples,
            "layout": self.sampler.layout,
        }

    def load_state_dict(self, state: dict) -> None:
        sampler = self.sampler
        if state["num_samples"] != sampler.num_samples:
            raise InputError(
                f"the checkpoint was trained on {state['num_samples']} target images but the target set now has "
                f"{sampler.num_samples}: resume with the data the run started with"
            )
        epoch, done = state["epoch"], state["batches_done"]
        if done * state["batch_size"] >= sampler.num_batches * sampler.batch_size:
            epoch, done = epoch + 1, 0  # saved at the end of an epoch
        elif done and state["batch_size"] != sampler.batch_size:
            raise InputError(
                f"the checkpoint was saved in the middle of an epoch with data.batch_size={state['batch_size']}: "
                f"resume it with the same batch size (now {sampler.batch_size})"
            )
        elif done and state.get("layout") != sampler.layout:
            raise InputError(
                "the checkpoint was saved in the middle of an epoch over other storage of the target set (files "
                "instead of shards, shards instead of files, or other shards), whose order differs: resume it with "
                "the target data it started with, or from a checkpoint saved at the end of an epoch"
            )
        sampler.set_epoch(epoch)
        sampler.skip_batches = done


class BatchShardSampler(DistributedSampler):
    """Evaluation order that counts every sample exactly once: the single-process batches, dealt round-robin.

    The indices ``0..num_samples-1`` are cut into batches of ``batch_size`` as one process would; process ``rank``
    takes batches ``rank, rank + world_size, ...``. Nothing is padded or dropped, and each batch holds the same
    images as on one process, so features match the single-process ones exactly. When there are fewer batches than
    processes, the set is cut into ``min(world_size, num_samples)`` near-equal batches instead, so that every
    process evaluates something (Lightning skips the evaluation hooks of a process without any batch, and the
    metrics' gather needs every process); only a set smaller than the number of processes leaves one empty.

    Args:
        num_samples: dataset length.
        batch_size: evaluation batch size (per batch, as on one process).
        rank: this process's global rank.
        world_size: number of processes.
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(range(num_samples), num_replicas=world_size, rank=rank, shuffle=False)
        self.num_samples = num_samples
        self.batch_size = batch_size

    def batches(self) -> list[range]:
        """All batches of the set, in single-process order (the same on every process)."""
        n, size, world = self.num_samples, self.batch_size, self.num_replicas
        if -(-n // size) >= world:
            return [range(start, min(start + size, n)) for start in range(0, n, size)]
        count = min(world, n)
        bounds = [n * i // count for i in range(count + 1)]
        return [range(a, b) for a, b in zip(bounds, bounds[1:])]

    def _indices(self) -> list[int]:
        return [i for batch in self.batches()[self.rank :: self.num_replicas] for i in batch]

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())
