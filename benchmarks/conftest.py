"""Shared benchmark settings: two threads (the target machine), and a peak-memory probe."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from lyra_core.testing import peak_allocated_bytes as probe

THREADS = 2


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def peak_allocated_bytes() -> Callable[[Callable[[], object]], int]:
    """The peak-memory probe, as a fixture: `peak_allocated_bytes(step)`."""
    return probe
