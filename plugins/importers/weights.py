"""Reading reference checkpoints safely and mapping their weights onto a Lyra model by position.

The Lyra model creates its parameters in the reference's order, so the i-th weight of the
reference goes to the i-th parameter, after checking that both have the same shape and the same
role (Snake α, bias, weight-norm magnitude g, direction v, plain weight).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lyra_core import LyraError

ROLES = {
    "alpha": "snake",
    "bias": "bias",
    "weight_g": "magnitude",
    "original0": "magnitude",
    "weight_v": "direction",
    "original1": "direction",
    "weight": "weight",
}


def role(key: str) -> str:
    return ROLES.get(key.rsplit(".", 1)[-1], key.rsplit(".", 1)[-1])


def map_by_position(
    reference: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """`target`'s keys with `reference`'s tensors, matched by position, shape and role."""
    ref_items, target_keys = list(reference.items()), list(target)
    if len(ref_items) != len(target_keys):
        raise LyraError(
            f"{what}: the reference has {len(ref_items)} weight tensors and the Lyra model "
            f"{len(target_keys)}; the checkpoint does not come from this configuration"
        )
    out = {}
    for (ref_key, tensor), key in zip(ref_items, target_keys, strict=True):
        want = target[key]
        if tensor.shape != want.shape or role(ref_key) != role(key):
            raise LyraError(
                f"{what}: reference {ref_key} {list(tensor.shape)} does not fit Lyra {key} "
                f"{list(want.shape)}; the checkpoint does not come from this configuration"
            )
        out[key] = tensor.to(want.dtype)
    return out


WEIGHT_ROLES = {"snake", "bias", "magnitude", "direction", "weight"}


def onto_parameters(
    reference: dict[str, torch.Tensor], model: nn.Module, what: str
) -> dict[str, torch.Tensor]:
    """`model`'s state dict with every parameter taken from `reference` by position."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    return {**model.state_dict(), **map_by_position(reference, params, what)}


def load_weights(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise LyraError(f"{path}: not a readable weights file ({reason})") from exc
    if not isinstance(data, dict):
        raise LyraError(f"{path}: expected a dict of weights, got a {type(data).__name__}")
    return data


def signature_defaults(cls: type) -> dict[str, Any]:
    return {
        k: p.default
        for k, p in inspect.signature(cls).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def reference_package(module: str, distribution: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LyraError(
            f"'default' builds the reference model from its package: pip install {distribution} "
            f"({exc})"
        ) from exc
