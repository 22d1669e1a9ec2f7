"""Process-level performance settings that the CLI applies for its users.

glibc returns every large block to the kernel when it is freed (mmap/munmap), so each training
step page-faults its activations in again. Raising the mmap and trim thresholds keeps freed
memory in the heap for reuse: PyTorch's CPU performance guide makes the same point (it suggests
jemalloc or tcmalloc). On glibc this is `mallopt`, done at run time through ctypes; elsewhere it
does nothing. `LYRA_KEEP_ALLOCATOR=1` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: 1 << 36, M_TOP_PAD: 1 << 30}


def tune_allocator() -> bool:
    """Keep large freed blocks for reuse (glibc only); returns whether anything was set."""
    if not sys.platform.startswith("linux") or os.environ.get("LYRA_KEEP_ALLOCATOR"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
