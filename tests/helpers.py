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


RATE = 8000  # the tiny specs' sample rate
NO_TRACKING = {"type": "none"}


def synthetic_data(
    validation_examples: int = 2, batch_size: int = 2, sample_rate: int = RATE
) -> dict:
    """A data section: synthetic mono audio, 4 training examples of 2048 samples."""
    return {
        "dataset": {
            "type": "synthetic",
            "train_examples": 4,
            "validation_examples": validation_examples,
        },
        "sample_rate": sample_rate,
        "channels": 1,
        "segment_length": 2048,
        "batch_size": batch_size,
    }


def autoencoder(bottleneck: dict, bands: int | None = 4) -> dict:
    """Two `coder`s around `bottleneck`, behind `bands` PQMF bands (None: no filterbank)."""
    bank = {"filterbank": {"type": "pqmf", "bands": bands}} if bands else {}
    coders = {"encoder": coder("conv_encoder"), "bottleneck": bottleneck}
    return {"type": "autoencoder", **bank, **coders, "decoder": coder("conv_decoder")}


def short_training(steps: int, **settings: object) -> dict:
    """A training section: `steps` steps of Adam, logged each, a checkpoint at the end."""
    return {
        "steps": steps,
        "optimizer": {"type": "adam", "lr": 0.001},
        "validate_every": 1000,
        "checkpoint_every": steps,
        "log_every": 1,
        "validation_batches": 1,
        "validation_examples": 0,
    } | settings
