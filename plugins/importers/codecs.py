"""SNAC and DAC: Snake conv stacks around a residual VQ (multi-scale for SNAC), DAC's recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from lyra_core import LyraError
from lyra_core.interfaces import Importer
from lyra_plugins.importers.weights import (
    load_weights,
    onto_parameters,
    reference_package,
    signature_defaults,
)

# SNAC()'s and DAC()'s defaults: what a configuration that leaves a setting out means.
SNAC_DEFAULTS: dict[str, Any] = {
    "encoder_dim": 64,
    "encoder_rates": [3, 3, 7, 7],
    "latent_dim": None,
    "decoder_dim": 1536,
    "decoder_rates": [7, 7, 3, 3],
    "attn_window_size": 32,
    "codebook_size": 4096,
    "codebook_dim": 8,
    "vq_strides": [8, 4, 2, 1],
    "noise": True,
    "depthwise": True,
    "sampling_rate": 44100,
}
DAC_DEFAULTS: dict[str, Any] = {
    "encoder_dim": 64,
    "encoder_rates": [2, 4, 8, 8],
    "latent_dim": None,
    "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2],
    "n_codebooks": 9,
    "codebook_size": 1024,
    "codebook_dim": 8,
    "quantizer_dropout": False,
    "sample_rate": 44100,
}
# The configurations of SNAC's published models (its config.json files), by name.
SNAC_CONFIGS: dict[str, dict[str, Any]] = {
    "24khz": SNAC_DEFAULTS
    | {
        "sampling_rate": 24000,
        "encoder_dim": 48,
        "encoder_rates": [2, 4, 8, 8],
        "decoder_dim": 1024,
        "decoder_rates": [8, 8, 4, 2],
        "attn_window_size": None,
        "vq_strides": [4, 2, 1],
    },
    "32khz": SNAC_DEFAULTS
    | {"sampling_rate": 32000, "encoder_rates": [2, 3, 8, 8], "decoder_rates": [8, 8, 3, 2]},
}

SNAC_BUFFERS = (".inv_freq", ".scale")  # its rotary embedding's tables, not weights


def conv_stacks(c: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The encoder and decoder specs of a DAC or SNAC configuration `c` (Snake, weight norm,
    widths ×2/÷2)."""
    encoder_dim, encoder_rates = c["encoder_dim"], c["encoder_rates"]
    decoder_dim, decoder_rates = c["decoder_dim"], c["decoder_rates"]
    depth = len(encoder_rates)
    if len(decoder_rates) != depth or decoder_dim % 2**depth:
        raise LyraError(
            f"decoder_dim {decoder_dim} with {len(decoder_rates)} rates: Lyra's conv_decoder "
            f"halves the width once per block, so it needs as many rates as the encoder "
            f"({depth}) and a decoder_dim divisible by {2**depth}"
        )
    mults = [2 ** (i + 1) for i in range(depth)]
    block = {"dilations": [1, 3, 9], "kernel_size": 7, "weight_norm": True}
    encoder = {
        "type": "conv_encoder",
        "base_channels": encoder_dim,
        "c_mults": mults,
        "strides": list(encoder_rates),
        "block": {"type": "encoder_block", **block},
        "input_kernel": 7,
        "output_kernel": 3,
        "weight_norm": True,
    }
    decoder = {
        "type": "conv_decoder",
        "base_channels": decoder_dim // 2**depth,
        "c_mults": mults,
        "strides": list(decoder_rates),
        "block": {"type": "decoder_block", "order": "upsample_first", **block},
        "input_kernel": 7,
        "output_kernel": 7,
        "weight_norm": True,
        "tanh": True,
    }
    return encoder, decoder


def rvq_autoencoder(
    c: dict[str, Any], encoder: dict, decoder: dict, n_codebooks: int, **quantizer: Any
) -> dict[str, Any]:
    """The autoencoder spec of a DAC or SNAC configuration `c`: its `conv_stacks` around a
    residual VQ (`quantizer`: the settings the two codecs do not share)."""
    latent = c.get("latent_dim") or c["encoder_dim"] * 2 ** len(c["encoder_rates"])
    bottleneck = {"type": "rvq", "dim": latent, "n_codebooks": n_codebooks}
    bottleneck |= {"codebook_size": c["codebook_size"], "codebook_dim": c["codebook_dim"]}
    return {
        "type": "autoencoder",
        "encoder": encoder,
        "bottleneck": bottleneck | quantizer,
        "decoder": decoder,
    }


def dac_recipe(name: str, sample_rate: int, segment: int, batch: int) -> dict[str, Any]:
    """DAC's training setup around a model: mel + VQ terms, MPD + MRSD, LSGAN, AdamW."""
    adamw = {"type": "adamw", "lr": 1e-4, "betas": [0.8, 0.99]}
    decay = {"type": "exponential", "gamma": 0.999996}
    return {
        "name": name,
        "seed": 0,
        "data": {
            "dataset": {"type": "synthetic"},
            "sample_rate": sample_rate,
            "channels": 1,
            "segment_length": segment,
            "batch_size": batch,
        },
        "losses": [
            {
                "type": "mel",
                "weight": 15.0,
                "window_lengths": [32, 64, 128, 256, 512, 1024, 2048],
                "n_mels": [5, 10, 20, 40, 80, 160, 320],
            },
            {"type": "term", "name": "commitment", "weight": 0.25},
            {"type": "term", "name": "codebook", "weight": 1.0},
        ],
        "training": {
            "steps": 400000,
            "optimizer": adamw,
            "scheduler": decay,
            "grad_clip": 1000.0,
            "adversarial": {
                "discriminator": {  # DAC's Discriminator(), exactly (tested)
                    "type": "combined",
                    "members": [
                        {"type": "mpd", "pad": "whole_period"},
                        {"type": "mrsd", "framing": "match_stride"},
                    ],
                    "normalize_peak": 0.8,
                },
                "losses": [{"type": "lsgan"}, {"type": "feature_matching", "weight": 2.0}],
                "optimizer": adamw,
                "scheduler": decay,
            },
        },
    }


def segment_for(unit: int, seconds_at_least: int) -> int:
    """The shortest multiple of `unit` samples that is at least `seconds_at_least` samples."""
    return unit * max(1, math.ceil(seconds_at_least / unit))


@attrs.frozen
class SNACImporter(Importer):
    """SNAC (hubertsiuzdak/snac): multi-scale RVQ, depthwise units, noise, local attention."""

    def read(
        self, source: str, config: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if source in ("default", *SNAC_CONFIGS):
            snac = reference_package("snac", "snac")
            preset = SNAC_CONFIGS.get(source, {})
            cfg = {**signature_defaults(snac.SNAC), **preset, **(config or {})}
            return cfg, snac.SNAC(**cfg).state_dict()
        path = Path(source)
        weights = path / "pytorch_model.bin" if path.is_dir() else path
        if config is None:
            config_file = (path if path.is_dir() else path.parent) / "config.json"
            if not config_file.is_file():
                raise LyraError(f"{source}: no config.json beside the weights; pass --config")
            config = json.loads(config_file.read_text())
        return {**SNAC_DEFAULTS, **config}, load_weights(weights)

    def experiment(self, config: dict[str, Any]) -> dict[str, Any]:
        c = config
        encoder, decoder = conv_stacks(c)
        window = c.get("attn_window_size")
        attention = (
            {"type": "local_attention", "window_size": window, "head_dim": 64, "rotary": True}
            if window
            else None
        )
        depthwise = bool(c.get("depthwise", True))
        encoder["block"]["depthwise"] = depthwise
        encoder.update(
            attention=attention,
            activation={"type": "identity"},
            output_kernel=7,
            output_conv="depthwise" if depthwise else "dense",
        )
        decoder["block"].update(depthwise=depthwise, noise=bool(c.get("noise", True)))
        decoder.update(attention=attention, input_conv="depthwise" if depthwise else "dense")
        strides = list(c["vq_strides"])
        rate = int(c["sampling_rate"])
        hop = math.prod(c["encoder_rates"])
        unit = hop * math.lcm(max(strides), window or 1)
        spec = dac_recipe(f"snac_{rate // 1000}khz", rate, segment_for(unit, 16384), 16)
        spec["model"] = rvq_autoencoder(c, encoder, decoder, len(strides), strides=strides)
        return spec

    def convert(
        self, state: dict[str, torch.Tensor], config: dict[str, Any], model: nn.Module
    ) -> dict[str, torch.Tensor]:
        weights = {k: v for k, v in state.items() if not k.endswith(SNAC_BUFFERS)}
        return onto_parameters(weights, model, "snac")


@attrs.frozen
class DACImporter(Importer):
    """DAC (descript-audio-codec): Snake conv stacks around a 9-level RVQ with quantizer dropout."""

    def read(
        self, source: str, config: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        if source == "default":
            reference_package("dac", "descript-audio-codec")
            from dac.model import DAC

            cfg = {**signature_defaults(DAC), **(config or {})}
            return cfg, DAC(**cfg).state_dict()
        try:
            data = load_weights(Path(source))
        except LyraError as exc:
            raise LyraError(
                f"{exc}\nif it is a torch.package archive (DAC.save's default), Lyra will not run "
                "the code inside it: re-save with DAC.save(path, package=False)"
            ) from exc
        if "state_dict" not in data:
            raise LyraError(f"{source}: not a DAC checkpoint (DAC.save writes a 'state_dict')")
        kwargs = (data.get("metadata") or {}).get("kwargs") or {}
        return {**DAC_DEFAULTS, **kwargs, **(config or {})}, data["state_dict"]

    def experiment(self, config: dict[str, Any]) -> dict[str, Any]:
        c = config
        if not isinstance(c["codebook_dim"], int):
            raise LyraError("DAC with a codebook_dim per level: Lyra's rvq takes one codebook_dim")
        encoder, decoder = conv_stacks(c)
        encoder["activation"] = {"type": "snake"}
        decoder["activation"] = {"type": "snake"}
        rate = int(c["sample_rate"])
        hop = math.prod(c["encoder_rates"])
        spec = dac_recipe(f"dac_{rate // 1000}khz", rate, segment_for(hop, 16758), 72)
        dropout = float(c["quantizer_dropout"])  # DAC() passes a bool; its training uses 0.5
        spec["model"] = rvq_autoencoder(
            c, encoder, decoder, c["n_codebooks"], quantizer_dropout=dropout
        )
        return spec

    def convert(
        self, state: dict[str, torch.Tensor], config: dict[str, Any], model: nn.Module
    ) -> dict[str, torch.Tensor]:
        return onto_parameters(state, model, "dac")
