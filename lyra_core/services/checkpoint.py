"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, saved with `torch.save` to
a temporary file in the same folder, fsynced, then renamed over the target: a crash while saving
leaves the previous file intact. It is read back with `torch.load(weights_only=True)`, which
refuses anything but those plain types.

The model's weights are under `model`; a run that kept a moving average of them
(`training.ema`) also has it under `ema`, a state dict with the same keys (None otherwise).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lyra_core.errors import LyraError
from lyra_core.services.atomic import atomic_write

FORMAT = 1
EMA = "ema"  # the key of the weights' moving average


def save_atomic(obj: dict[str, Any], path: Path, what: str = "") -> None:
    with atomic_write(path, what=what) as f:
        torch.save(obj, f)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a Lyra checkpoint safely; a clear error for a missing, foreign or corrupt file."""
    if not path.is_file():
        raise LyraError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LyraError(
            f"{path}: not a readable Lyra checkpoint ({type(exc).__name__}: {reason})"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LyraError(f"{path}: not a Lyra checkpoint (format {FORMAT} expected)")
    return data


def rng_state() -> dict[str, Any]:
    """Every global RNG's state, in weights_only-safe types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
