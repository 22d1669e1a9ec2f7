"""One process or many (torchrun, on one node or several): device choice, process group, and
which process does what.

Global rank 0 alone writes the run's records, checkpoints and tracking. Each node's local rank 0
prepares what is kept per node (the audio cache, `$LYRA_CACHE_DIR`) before that node's other
processes read it (`local_first`). A run resumes only with the world size it was trained with:
its data position and the shards' split among processes are counted for that many.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import torch
import torch.distributed as dist

from lyra_core.errors import LyraError
from lyra_core.services.device import pick_device


@attrs.frozen
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of `value` over all processes."""
        return self.means({"value": value})["value"]

    def means(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over all processes, in one all-reduce (every process passes
        the same keys in the same order)."""
        if self.world == 1:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(values, t.tolist(), strict=True)}

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any process (every process gets the same answer)."""
        return self.mean(float(flag)) > 0

    @contextlib.contextmanager
    def local_first(self) -> Iterator[None]:
        """The block on each node's local rank 0 first (it fills the node's caches), then on
        the node's other processes, which find them filled. Every process passes one barrier,
        also when the block raises (the others then meet the same error themselves)."""
        if self.local_rank:
            self.barrier()
        try:
            yield
        finally:
            if not self.local_rank:
                self.barrier()

    def check_resume(self, trained_world: int | None, checkpoint: Path) -> None:
        """Refuse to resume a run on another number of processes than it was trained on."""
        if trained_world is None or trained_world == self.world:
            return
        raise LyraError(
            f"{checkpoint}: the run was trained by {trained_world} process(es) and this resume "
            f"has {self.world}; its data position and each process's share of the data are "
            f"counted for {trained_world}. Resume it with {trained_world} in all (torchrun "
            "--nnodes × --nproc-per-node), or start a new run from its weights with "
            "`lyra run SPEC --init RUN`"
        )


def env_rank() -> int:
    """This process's global rank under torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0"))


def setup(requested: str) -> Dist:
    """Join the torchrun process group if WORLD_SIZE > 1: NCCL for CUDA tensors, gloo for CPU
    ones (the scalars `mean` reduces are CPU tensors, which NCCL alone refuses)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return Dist(env_rank(), world, local_rank, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
