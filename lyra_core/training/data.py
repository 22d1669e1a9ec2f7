"""Batches in a deterministic order that a checkpoint can resume mid-epoch.

Map-style datasets: epoch e visits the dataset in `randperm(n)` seeded by
`derive_seed(seed, "order", e)`; a position is `(epoch, offset)`, the index in that permutation
where the next batch starts. Under DDP each rank takes every world-th example of each global batch.

Sharded datasets (`ShardedData`, e.g. the `shards` dataset's train split) are streamed instead.
Epoch e puts the shards in `randperm(shards)` order seeded by `derive_seed(seed, "shards", e)`
and treats them as one sequence of N examples. With W ranks, K = max(1, num_workers) readers per
rank and b = batch_size / W examples per rank and batch, every rank takes the same
M = floor(N / (b·W·K))·K batches per epoch (DDP's collectives need equal step counts): the
sequence is cut into W·K consecutive chunks of M/K·b examples, chunk rank·K + reader for each
reader, and the last N − M·b·W examples of the epoch's order are left out of that epoch (fewer
than batch_size·K; the shard order changes each epoch, so other examples are left out next time).
Every other example is read exactly once per epoch, by one reader. A chunk may start or end inside
a shard: both readers open it, each reading only its part. A rank's batches come from its readers
in turn (batch p from reader p mod K), and with `shuffle_buffer` > 1 each reader draws its
examples at random from a buffer of that many (seeded per epoch, rank and reader). The position
is `(epoch, offset)` as above, offset counting global examples (p·batch_size); a resumed stream
re-derives every reader's place from it, so it yields the batches an uninterrupted stream would,
given the same shards, batch size, world size and num_workers.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lyra_core.errors import LyraError
from lyra_core.seeds import derive_seed


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


# -- sharded (iterable) datasets -------------------------------------------------------------


@runtime_checkable
class ShardedData(Protocol):
    """A dataset stored as shards, which the batch stream reads in parallel (see above).

    `shard_sizes[i]` is the number of examples in shard i. `read_shard(i, start, stop, skip)`
    yields `(number, example)` for the examples start <= number < stop of shard i in stored order,
    leaving out the numbers in `skip` without decoding them; each example is float32 [C, T].
    `shuffle_buffer` is the number of examples each reader shuffles in memory (0 or 1: none).
    """

    shard_sizes: Sequence[int]
    shuffle_buffer: int

    def read_shard(
        self, shard: int, start: int, stop: int, skip: Container[int]
    ) -> Iterator[tuple[int, torch.Tensor]]: ...


@attrs.frozen
class StreamError:
    """A user error raised in a loader worker, carried to the main process as its message."""

    message: str


@attrs.frozen
class Piece:
    """Examples start..stop-1 of one shard, and where they begin in the reader's chunk."""

    shard: int
    start: int
    stop: int
    at: int


@attrs.frozen
class ShardPlan:
    """How one rank's readers split each epoch of a sharded dataset."""

    sizes: tuple[int, ...]
    per_rank: int  # examples per rank and batch
    rank: int
    world: int
    readers: int
    seed: int
    buffer: int

    @property
    def batches(self) -> int:
        """Batches each rank takes per epoch: a multiple of the readers, the same on every rank."""
        total = sum(self.sizes)
        return total // (self.per_rank * self.world * self.readers) * self.readers

    @property
    def chunk(self) -> int:
        """Examples each reader yields per epoch."""
        return self.batches // self.readers * self.per_rank

    def pieces(self, epoch: int, reader: int) -> list[Piece]:
        """The parts of shards that `reader` of this rank reads in `epoch`, in order."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "shards", epoch))
        begin = (self.rank * self.readers + reader) * self.chunk
        end, at, pieces = begin + self.chunk, 0, []
        for shard in torch.randperm(len(self.sizes), generator=gen).tolist():
            lo, hi = max(begin, at), min(end, at + self.sizes[shard])
            if lo < hi:
                pieces.append(Piece(shard, lo - at, hi - at, lo - begin))
            at += self.sizes[shard]
            if at >= end:
                break
        return pieces

    def order(self, epoch: int, reader: int) -> BufferOrder:
        seed = derive_seed(self.seed, "shuffle", epoch, self.rank, reader)
        return BufferOrder(self.chunk, self.buffer, seed)


class BufferOrder:
    """The order a reader yields its chunk of `n` examples in, as positions in the chunk, one at
    a time (`current`, then `advance()`): with `size` > 1, each example that comes in goes into
    a buffer of that many and a random held one goes out, and once all have come in the rest go
    out in random order (webdataset's shuffle); otherwise in stored order."""

    DRAWS = 4096  # random picks drawn at once

    def __init__(self, n: int, size: int, seed: int):
        self.n, self.size, self.emitted = n, min(size, n) if size > 1 else 1, 0
        self.rng = np.random.default_rng(seed)
        self.held, self.next_in = list(range(self.size)), self.size
        self.draws: list[int] = []
        self.tail: list[int] | None = None  # the shuffled rest, once every example came in
        self.current: int | None = None
        self.advance()

    def advance(self) -> None:
        """Move `current` to the next position to go out (None after the last)."""
        if self.size == 1:
            self.current = self.emitted if self.emitted < self.n else None
        elif self.next_in < self.n:
            if not self.draws:
                self.draws = self.rng.integers(0, self.size, self.DRAWS).tolist()[::-1]
            j = self.draws.pop()
            self.current, self.held[j] = self.held[j], self.next_in
            self.next_in += 1
        else:
            if self.tail is None:
                self.tail = self.rng.permutation(self.held).tolist()[::-1]
            self.current = self.tail.pop() if self.tail else None
        self.emitted += 1

    def skip(self, k: int) -> None:
        """Let the first `k` positions go out unread (a resumed stream)."""
        if self.size == 1:  # in stored order: straight there
            self.emitted = k
            self.advance()
            return
        for _ in range(k):
            self.advance()

    def pending(self) -> Pending:
        """The positions still to go out: those not read yet, and those held."""
        if self.size == 1:
            return Pending(self.n if self.current is None else self.current, np.empty(0, int))
        held = self.tail if self.tail is not None else self.held
        current = [] if self.current is None else [self.current]
        return Pending(self.next_in, np.sort(np.asarray([*held, *current], dtype=np.int64)))


@attrs.frozen
class Pending:
    """Positions still to go out: all from `first` on, and `held` (sorted) below it."""

    first: int
    held: np.ndarray

    def start(self, lo: int, hi: int) -> int | None:
        """The first pending position in [lo, hi), or None."""
        at = int(np.searchsorted(self.held, lo))
        below = int(self.held[at]) if at < len(self.held) and self.held[at] < hi else None
        above = max(lo, self.first) if max(lo, self.first) < hi else None
        return min((p for p in (below, above) if p is not None), default=None)

    def __contains__(self, position: int) -> bool:
        if position >= self.first:
            return True
        at = int(np.searchsorted(self.held, position))
        return at < len(self.held) and int(self.held[at]) == position


@attrs.frozen
class _Gone:
    """Shard numbers whose positions are not pending: what a resumed reader skips."""

    pending: Pending
    shift: int  # position - shard number

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and number + self.shift not in self.pending


def reader_batches_before(batch: int, reader: int, readers: int) -> int:
    """How many of a rank's batches 0..batch-1 came from `reader` (batch p from p mod K)."""
    return max(0, -(-(batch - reader) // readers))


class ShardStream(IterableDataset):
    """One rank's endless stream of batches of a sharded dataset, from `start` onwards.

    Loader worker w plays reader (w + p) mod K, p being the start batch within its epoch, so that
    the loader's turn-taking (worker 0 first) gives batch p first.
    """

    def __init__(self, data: ShardedData, plan: ShardPlan, start: Position, batch_size: int):
        self.data, self.plan = data, plan
        self.epoch, self.batch = start.epoch, start.offset // batch_size

    def __iter__(self) -> Iterator[torch.Tensor | StreamError]:
        info = get_worker_info()
        readers = self.plan.readers
        reader = ((info.id if info else 0) + self.batch) % readers
        done = reader_batches_before(self.batch, reader, readers)
        epoch = self.epoch
        try:
            while True:
                yield from self._epoch(epoch, reader, done * self.plan.per_rank)
                epoch, done = epoch + 1, 0
        except LyraError as exc:  # shown as one message by the main process, not a traceback
            yield StreamError(str(exc))

    def _epoch(self, epoch: int, reader: int, skipped: int) -> Iterator[torch.Tensor]:
        """The reader's batches of `epoch`, leaving out its first `skipped` examples."""
        batch: list[torch.Tensor] = []
        for x in self._examples(epoch, reader, skipped):
            batch.append(x)
            if len(batch) == self.plan.per_rank:
                yield torch.stack(batch)
                batch = []

    def _examples(self, epoch: int, reader: int, skipped: int) -> Iterator[torch.Tensor]:
        """The chunk's examples in the reader's order from its `skipped`-th on; those before are
        not decoded. At most about `buffer` examples are held at once."""
        order = self.plan.order(epoch, reader)
        order.skip(skipped)
        pending = order.pending()
        held: dict[int, torch.Tensor] = {}
        for piece in self.plan.pieces(epoch, reader):
            first = pending.start(piece.at, piece.at + piece.stop - piece.start)
            if first is None:
                continue
            gone, shift = _Gone(pending, piece.at - piece.start), piece.at - piece.start
            for number, x in self.data.read_shard(piece.shard, first - shift, piece.stop, gone):
                held[number + shift] = x
                while order.current in held:
                    yield held.pop(order.current)
                    order.advance()
        if order.current is not None:
            raise LyraError(
                "the shards gave fewer examples than their index lists; prepare them again"
            )


def _raise_stream_errors(batches: Iterator[Any]) -> Iterator[torch.Tensor]:
    for batch in batches:
        if isinstance(batch, StreamError):
            raise LyraError(batch.message)
        yield batch


def _shard_stream(
    data: ShardedData,
    batch_size: int,
    seed: int,
    start: Position,
    dist: tuple[int, int],
    num_workers: int,
    pin_memory: bool,
) -> tuple[Iterator[torch.Tensor], int]:
    rank, world = dist
    if batch_size % world:
        raise LyraError(f"data.batch_size {batch_size} is not divisible by {world} processes")
    plan = ShardPlan(
        tuple(int(n) for n in data.shard_sizes),
        batch_size // world,
        rank,
        world,
        max(1, num_workers),
        seed,
        int(data.shuffle_buffer),
    )
    if plan.batches == 0:
        readers = f" x {plan.readers} data workers" if plan.readers > 1 else ""
        raise LyraError(
            f"the training shards hold {sum(plan.sizes)} examples, fewer than one batch of "
            f"{batch_size}{readers}: add data, or lower data.batch_size or data.num_workers"
        )
    loader = DataLoader(
        ShardStream(data, plan, start, batch_size),
        generator=torch.Generator().manual_seed(derive_seed(seed, "loader")),
        batch_size=None,  # the stream yields whole batches
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
    return _raise_stream_errors(iter(loader)), plan.batches * batch_size


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
    """An endless iterator of batches starting at `start`, and the usable examples per epoch
    (a sharded dataset is streamed as the module's docstring says)."""
    if isinstance(dataset, ShardedData):
        return _shard_stream(
            dataset, batch_size, seed, start, (rank, world), num_workers, pin_memory
        )
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
