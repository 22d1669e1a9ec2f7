"""Spec pieces several test modules build tiny models from."""

from __future__ import annotations

EAGER_SNAKE = {"type": "snake", "implementation": "eager"}


def coder(kind: str) -> dict:
    """A one-stage conv encoder or decoder, 4 → 8 channels, stride 4, eager Snake."""
    block = "encoder_block" if kind == "conv_encoder" else "decoder_block"
    return {
        "type": kind,
        "base_channels": 4,
        "c_mults": [2],
        "strides": [4],
        "activation": EAGER_SNAKE,
        "block": {"type": block, "activation": EAGER_SNAKE},
    }
