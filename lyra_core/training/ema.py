"""An exponential moving average (EMA) of the model's weights, kept beside the training run.

After optimizer step n (n > start, every k-th step from `start`) each floating-point parameter's
average moves toward the weights: ema ← decay·ema + (1 − decay)·w; up to and at `start` it is a
copy of them. Buffers (filters, masks, counters) are copied, not averaged. The average is a
plain dict of tensors with the model's `state_dict` keys, on the model's device: a checkpoint
stores it under its own key, and a freshly built model loads it like its own weights.

Why not `torch.optim.swa_utils.AveragedModel`: it deep-copies the module (a second model, keys
prefixed `module.`), copies the weights only on its first update (a `start` would mean resetting
its counter each step), and either never updates buffers or averages them all, integer ones
included. The update here is the same `torch._foreach_lerp_` its EMA uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from lyra_core.experiment import EmaSpec


class WeightAverage:
    """The EMA of a model's weights, updated after each optimizer step (`update`)."""

    def __init__(self, spec: EmaSpec, model: nn.Module):
        self.spec = spec
        live = model.state_dict(keep_vars=True)
        self.state = {name: t.detach().clone() for name, t in live.items()}
        self.averaged = [name for name, t in live.items() if _averaged(t)]
        self.copied = [name for name in live if name not in self.averaged]

    def due(self, step: int) -> str | None:
        """What step `step` does to the average: 'copy', 'update' or nothing (None)."""
        if step <= self.spec.start:
            return "copy"
        return "update" if (step - self.spec.start) % self.spec.every == 0 else None

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step `step` (1 for the first)."""
        action = self.due(step)
        if action is None:
            return
        live = model.state_dict(keep_vars=True)
        copied = self.copied
        if action == "copy":
            copied = list(self.state)
        elif self.averaged:
            averages = [self.state[n] for n in self.averaged]
            weights = [live[n].detach() for n in self.averaged]
            torch._foreach_lerp_(averages, weights, 1.0 - self.spec.decay)
        for name in copied:
            self.state[name].copy_(live[name].detach())

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Restart the average from the model's current weights."""
        self.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take a saved average (the model's keys; tensors on any device)."""
        missing = sorted(set(self.state) - set(state))
        unexpected = sorted(set(state) - set(self.state))
        if missing or unexpected:
            raise KeyError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        for name, tensor in self.state.items():
            tensor.copy_(state[name])

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """The model holding the average inside the block, its own weights (exactly) after it."""
        live = model.state_dict(keep_vars=True)
        names = list(self.state)
        saved = [live[n].detach().clone() for n in names]
        with torch.no_grad():
            torch._foreach_copy_([live[n].detach() for n in names], [self.state[n] for n in names])
        try:
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_([live[n].detach() for n in names], saved)


def _averaged(tensor: torch.Tensor) -> bool:
    """Floating-point parameters are averaged; buffers and integer tensors are copied."""
    return isinstance(tensor, nn.Parameter) and tensor.is_floating_point()
