"""Batches in a deterministic order that a checkpoint can resume mid-epoch.

Epoch e visits the dataset in `randperm(n)` seeded by `derive_seed(seed, "order", e)`; a
position is `(epoch, offset)`, the index in that permutation where the next batch starts. Under
DDP each rank takes every world-th example of each global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch.utils.data import DataLoader

from lyra_core.errors import LyraError
from lyra_core.training.seeds import derive_seed


@attrs.define
class Position:
    epoch: int = 0
    offset: int = 0

    def advance(self, batch_size: int, usable: int) -> None:
        self.offset += batch_size
        if self.offset + batch_size > usable:
            self.epoch, self.offset = self.epoch + 1, 0


class BatchSampler:
    """Index lists for one rank, from `start` onwards, forever."""

    def __init__(self, n: int, batch_size: int, seed: int, start: Position, rank: int, world: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.rank, self.world = attrs.evolve(start), rank, world
        self.usable = n - n % batch_size

    def order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
        return torch.randperm(self.n, generator=gen)

    def __iter__(self) -> Iterator[list[int]]:
        pos = attrs.evolve(self.start)
        while True:
            order = self.order(pos.epoch)
            batch = order[pos.offset : pos.offset + self.batch_size]
            yield batch[self.rank :: self.world].tolist()
            pos.advance(self.batch_size, self.usable)


def batch_stream(
    dataset: Any,
    batch_size: int,
    seed: int,
    start: Position,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[Iterator[torch.Tensor], int]:
    """An endless iterator of batches starting at `start`, and the usable examples per epoch."""
    n = len(dataset)
    if n < batch_size:
        raise LyraError(
            f"the training set has {n} examples, fewer than one batch of {batch_size}: "
            "add data or lower data.batch_size"
        )
    if batch_size % world:
        raise LyraError(f"data.batch_size {batch_size} is not divisible by {world} processes")
    sampler = BatchSampler(n, batch_size, seed, start, rank, world)
    # The loader gets its own generator: creating its iterator must not draw from the global
    # RNG, or a resumed run would see other noise than an uninterrupted one.
    loader = DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(derive_seed(seed, "loader")),
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
    return iter(loader), sampler.usable
