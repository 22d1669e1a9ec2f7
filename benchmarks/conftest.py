"""Shared benchmark settings: two threads (the target machine), and a peak-memory probe."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lyra_core.testing import peak_allocated_bytes as probe
from lyra_core.testing import torch_threads

THREADS = 2


@pytest.fixture(autouse=True)
def two_threads():
    with torch_threads(THREADS):
        yield


@pytest.fixture
def peak_allocated_bytes() -> Callable[[Callable[[], object]], int]:
    """The peak-memory probe, as a fixture: `peak_allocated_bytes(step)`."""
    return probe
