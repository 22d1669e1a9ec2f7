"""The component kinds the core defines, each with its build contract.

Every component's spec class has `build(ctx: BuildContext, **kwargs)`; the kwargs per kind are
given here, and `example()` returns a set of them that the contract tests build with.
"""

from __future__ import annotations

from typing import Any

from lyra_core.registry import Kind, Origin
from lyra_core.spec import Ref

CORE = Origin("lyra_core", "lyra-audio")


def _params() -> dict[str, Any]:
    import torch

    return {"params": [torch.nn.Parameter(torch.zeros(4))]}


def _optimizer() -> dict[str, Any]:
    import torch

    return {"optimizer": torch.optim.SGD([torch.nn.Parameter(torch.zeros(4))], lr=0.1), "steps": 10}


CORE_KINDS: tuple[Kind, ...] = tuple(
    Kind(name, doc, example, CORE)
    for name, doc, example in [
        (
            "activation",
            "build(ctx, channels) -> shape-preserving module on [B, C, T]",
            lambda: {"channels": 4},
        ),
        (
            "block",
            "build(ctx, in_channels, out_channels, stride) -> module on [B, C, T]",
            lambda: {"in_channels": 4, "out_channels": 4, "stride": 1},
        ),
        (
            "encoder",
            "build(ctx, in_channels, out_channels) -> module [B, Cin, T] -> [B, Cout, T/hop]",
            lambda: {"in_channels": 1, "out_channels": 4},
        ),
        (
            "decoder",
            "build(ctx, in_channels, out_channels) -> module [B, Cin, T'] -> [B, Cout, T]",
            lambda: {"in_channels": 4, "out_channels": 1},
        ),
        (
            "bottleneck",
            "build(ctx) -> module: encode returns the latent and named loss terms",
            dict,
        ),
        (
            "filterbank",
            "build(ctx) -> module with analysis [B, C, T] -> [B, C*M, T/M] and synthesis",
            dict,
        ),
        (
            "discriminator",
            "build(ctx) -> module returning feature maps and logits per sub-discriminator",
            dict,
        ),
        (
            "augmentation",
            "build(ctx) -> batched transform of [B, C, T] audio on the training device",
            dict,
        ),
        ("loss", "build(ctx) -> module(output: ModelOutput, target) -> scalar", dict),
        (
            "adversarial",
            "build(ctx) -> AdversarialLoss: discriminator_loss and generator_loss over critiques",
            dict,
        ),
        ("weight_schedule", "build(ctx) -> callable(step) -> weight (e.g. KL warm-up)", dict),
        (
            "dataset",
            "build(ctx, split) -> dataset of [C, T] audio segments",
            lambda: {"split": "train"},
        ),
        ("optimizer", "build(ctx, params) -> torch.optim.Optimizer", _params),
        ("scheduler", "build(ctx, optimizer, steps) -> learning-rate scheduler", _optimizer),
        ("model", "build(ctx) -> nn.Module with encode, decode and forward", dict),
        (
            "prior",
            "build(ctx, latent_channels) -> Prior: nll and next_frame over latents [B, D, T]",
            lambda: {"latent_channels": 4},
        ),
        ("tracker", "build(ctx) -> experiment tracker (MLflow, none, ...)", dict),
        (
            "entropy_model",
            "build(ctx) -> EntropyModel: probabilities of a latent's symbols for .lyra files",
            dict,
        ),
        (
            "importer",
            "build(ctx) -> Importer: a reference codec's checkpoint as a spec and weights",
            dict,
        ),
    ]
)

# Slot types for fields that hold any component of a core kind, e.g. `activation: ActivationRef`.
# They end in `Ref` so that a slot (`BottleneckRef`: a spec naming any registered bottleneck)
# never shares a name with the module base class it builds (`interfaces.Bottleneck`).
# A plugin that declares a kind makes its own the same way: `VocoderRef = Ref["vocoder"]`.
ActivationRef = Ref["activation"]
BlockRef = Ref["block"]
EncoderRef = Ref["encoder"]
DecoderRef = Ref["decoder"]
BottleneckRef = Ref["bottleneck"]
FilterbankRef = Ref["filterbank"]
DiscriminatorRef = Ref["discriminator"]
AugmentationRef = Ref["augmentation"]
LossRef = Ref["loss"]
AdversarialRef = Ref["adversarial"]
WeightScheduleRef = Ref["weight_schedule"]
DatasetRef = Ref["dataset"]
OptimizerRef = Ref["optimizer"]
SchedulerRef = Ref["scheduler"]
ModelRef = Ref["model"]
PriorRef = Ref["prior"]
TrackerRef = Ref["tracker"]
EntropyModelRef = Ref["entropy_model"]
