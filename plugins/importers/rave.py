"""RAVE v2 (acids-rave 2.3.1, v2.gin): its spec and its encoder + generator weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from lyra_core import LyraError
from lyra_core.interfaces import Importer
from lyra_plugins.importers.weights import WEIGHT_ROLES, load_weights, onto_parameters, role


def rave_v2_experiment() -> dict[str, Any]:
    """RAVE v2 (v2.gin over v1.gin) as a Lyra spec: 16-band PQMF, bias-free weight-normed conv
    stacks with LeakyReLU(0.2), a softplus Gaussian latent of 128, two phases."""
    leaky = {"type": "leaky_relu", "negative_slope": 0.2}
    common = {"kernel_size": 3, "activation": leaky, "weight_norm": True, "bias": False}
    dilations = [[1, 3, 9], [1, 3, 9], [1, 3, 9], [1, 3]]
    stack = {"base_channels": 96, "c_mults": [2, 4, 8, 16], "activation": leaky}
    stack |= {"weight_norm": True, "bias": False}
    encoder = {
        "type": "conv_encoder",
        **stack,
        "strides": [4, 4, 4, 2],
        "blocks": [
            {"type": "encoder_block", "dilations": d, **common, "padding": "asymmetric"}
            for d in dilations
        ],
        "input_kernel": 7,
        "output_kernel": 3,
    }
    up = {"order": "upsample_first", "upsample": "transposed"}
    decoder = {
        "type": "conv_decoder",
        **stack,
        "strides": [2, 4, 4, 4],
        "blocks": [
            {"type": "decoder_block", "dilations": d, **common, **up} for d in dilations[::-1]
        ],
        "input_kernel": 3,
        "output_kernel": 7,
        "amplitude_modulation": True,
        "amplitude_half": "second",
        "tanh": True,
    }
    adam = {"type": "adam", "lr": 1e-4, "betas": [0.5, 0.9]}
    matching = {"type": "feature_matching", "weight": 20.0, "distance": "relative_l1"}
    matching |= {"over_layers": "mean", "over_discriminators": "sum"}
    return {
        "name": "rave_v2",
        "seed": 0,
        "data": {
            "dataset": {"type": "synthetic"},
            "sample_rate": 44100,
            "channels": 1,
            "segment_length": 131072,
            "batch_size": 8,
        },
        "model": {
            "type": "autoencoder",
            "filterbank": {"type": "pqmf", "bands": 16},
            "encoder": encoder,
            "bottleneck": {
                "type": "gaussian",
                "latent_dim": 128,
                "scale": "softplus",
                "kl_reduction": "sum_latent",
            },
            "decoder": decoder,
        },
        "losses": [
            {"type": "multiscale_spectral"},
            {
                "type": "term",
                "name": "kl",
                "schedule": {"type": "log_linear", "start": 1e-6, "end": 0.05, "end_step": 20000},
            },
        ],
        "training": {
            "steps": 2000000,
            "optimizer": adam,
            "adversarial": {
                "discriminator": {
                    "type": "combined",
                    "members": [
                        {"type": "mpd", "periods": [2, 3, 5, 7, 11]},
                        {"type": "msd", "scales": 3},
                    ],
                },
                "losses": [{"type": "hinge"}, matching],
                "optimizer": adam,
            },
            "phases": [
                {"name": "representation", "until": 1000000},
                {
                    "name": "adversarial",
                    "adversarial": True,
                    "discriminator_every": 4,
                    "frozen": ["encoder"],
                },
            ],
        },
    }


@attrs.frozen
class RAVEImporter(Importer):
    """RAVE v2 (acids-rave 2.3.1, v2.gin): its encoder and generator; the discriminator is not
    imported (a fine-tune starts it afresh)."""

    def read(
        self, source: str, config: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if source == "default":
            raise LyraError(
                "rave: acids-rave cannot be installed beside Lyra (it pins scipy 1.10); give "
                "a checkpoint (.ckpt) of a v2.gin model"
            )
        try:
            data = load_weights(Path(source))
        except LyraError as exc:
            raise LyraError(
                f"{exc}\nif the Lightning checkpoint holds more than weights, save its "
                "'state_dict' alone where you trust it: "
                "torch.save(torch.load(CKPT)['state_dict'], 'rave_weights.pt')"
            ) from exc
        state = data.get("state_dict", data)
        return {"config": "v2", **(config or {})}, state

    def experiment(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("config", "v2") != "v2":
            raise LyraError(f"rave: only the v2.gin configuration is supported, not {config}")
        return rave_v2_experiment()

    def convert(
        self, state: dict[str, torch.Tensor], config: dict[str, Any], model: nn.Module
    ) -> dict[str, torch.Tensor]:
        weights = {
            k: v
            for k, v in state.items()
            if k.startswith(("encoder.", "decoder.")) and role(k) in WEIGHT_ROLES
        }
        return onto_parameters(weights, model, "rave (v2.gin)")
