"""Shared benchmark settings: two threads (the target machine), and a peak-memory probe."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

THREADS = 2


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(previous)


def _peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Peak of live CPU tensor bytes allocated while `fn` runs.

    tracemalloc cannot see torch's allocator and RSS never goes down within a process, so this
    replays the allocation and free events that the torch profiler records (profile_memory=True)
    in time order. Tensors alive before `fn` starts are not counted.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@pytest.fixture
def peak_allocated_bytes() -> Callable[[Callable[[], object]], int]:
    """The peak-memory probe, as a fixture: `peak_allocated_bytes(step)`."""
    return _peak_allocated_bytes
