"""Which device a command runs on: `auto` picks CUDA, then MPS, then the CPU."""

from __future__ import annotations

import torch

from lyra_core.errors import LyraError


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable explicit choice is an error."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        requested = "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda":
        if not cuda:
            raise LyraError("--device cuda: no CUDA device is available (try --device auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested == "mps" and not mps:
        raise LyraError("--device mps: MPS is not available (try --device auto)")
    if requested not in ("cpu", "mps"):
        raise LyraError(f"--device {requested}: expected auto, cpu, cuda or mps")
    return torch.device(requested)
