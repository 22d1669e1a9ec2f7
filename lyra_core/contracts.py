"""What each core kind's built object must do when run: the checks `check_component` applies.

`CONTRACTS[kind](built, build_kwargs, ctx)` runs the object on the kind's example input and
raises `ContractError` naming what is wrong (shape, dtype, non-finite output, missing
gradients). torch is imported inside the checks, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lyra_core.context import BuildContext

BATCH, LENGTH = 2, 64


class ContractError(AssertionError):
    """A built component that does not do what its kind promises."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _tensor(value: Any, what: str, shape: tuple[int, ...] | None = None) -> Any:
    """`value` as a finite float32 tensor of `shape` (any shape when None), or a ContractError."""
    import torch

    _require(isinstance(value, torch.Tensor), f"{what} is {type(value).__name__}, not a tensor")
    _require(
        value.dtype == torch.float32, f"{what} has dtype {value.dtype}, not the input's float32"
    )
    if shape is not None:
        _require(
            tuple(value.shape) == shape,
            f"{what} has shape {list(value.shape)}, expected {list(shape)}",
        )
    _require(bool(torch.isfinite(value).all()), f"{what} is not finite (NaN or inf)")
    return value


def _gradients(module: Any, loss: Any, inputs: Any = None) -> None:
    """Backward through `loss`: every trainable parameter, and `inputs`, get finite gradients."""
    import torch

    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not params and inputs is None:
        return
    _require(loss.requires_grad, "the output does not depend on the input or the parameters")
    loss.backward()
    if inputs is not None:
        _require(inputs.grad is not None, "no gradient flows back to the input")
        _require(bool(torch.isfinite(inputs.grad).all()), "the input's gradient is not finite")
    missing = [n for n, p in params if p.grad is None]
    _require(not missing, f"trainable parameters get no gradient: {', '.join(missing[:5])}")
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    _require(not bad, f"trainable parameters get non-finite gradients: {', '.join(bad[:5])}")


def _audio(channels: int, length: int, grad: bool = True) -> Any:
    import torch

    generator = torch.Generator().manual_seed(0)
    x = 0.5 * torch.randn(BATCH, channels, length, generator=generator)
    return x.requires_grad_(grad)


def activation(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    x = _audio(kwargs["channels"], LENGTH)
    y = _tensor(built(x), "the output", tuple(x.shape))
    _gradients(built, y.square().mean(), x)


def block(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    x = _audio(kwargs["in_channels"], LENGTH * kwargs.get("stride", 1))
    y = _tensor(built(x), "the output")
    _require(
        tuple(y.shape[:2]) == (BATCH, kwargs["out_channels"]),
        f"the output has shape {list(y.shape)}, expected [{BATCH}, {kwargs['out_channels']}, T]",
    )
    _gradients(built, y.square().mean(), x)


def encoder(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    hop = int(getattr(built, "hop_length", 1))
    multiple = hop * int(getattr(built, "frame_multiple", 1))
    x = _audio(kwargs["in_channels"], 4 * multiple)
    y = _tensor(built(x), "the output", (BATCH, kwargs["out_channels"], 4 * multiple // hop))
    _gradients(built, y.square().mean(), x)


def decoder(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    hop = int(getattr(built, "hop_length", 1))
    frames = 4 * int(getattr(built, "frame_multiple", 1))
    z = _audio(kwargs["in_channels"], frames)
    y = _tensor(built(z), "the output", (BATCH, kwargs["out_channels"], frames * hop))
    _gradients(built, y.square().mean(), z)


def filterbank(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    from lyra_core.interfaces import Filterbank

    _require(isinstance(built, Filterbank), "build() must return a lyra_core.interfaces.Filterbank")
    bands = int(built.bands)
    x = _audio(ctx.channels, bands * LENGTH, grad=False)
    sub = _tensor(built.analysis(x), "analysis(x)", (BATCH, ctx.channels * bands, LENGTH))
    _tensor(built.synthesis(sub), "synthesis(analysis(x))", tuple(x.shape))


def bottleneck(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    from lyra_core.interfaces import Bottleneck

    _require(isinstance(built, Bottleneck), "build() must return a lyra_core.interfaces.Bottleneck")
    frames = 4 * int(getattr(built, "frame_multiple", 1))
    h = _audio(int(built.input_channels), frames)
    out = built.encode(h)
    _require(isinstance(out, tuple) and len(out) == 2, "encode(h) must return (latent, terms)")
    z, terms = out
    _tensor(z, "the latent")
    _require(isinstance(terms, dict), "encode(h)'s terms must be a dict of named tensors")
    for name, term in terms.items():
        _tensor(term, f"the term '{name}'")
    dec = built.decoder_input(z, frames)
    _tensor(dec, "decoder_input(z)", (BATCH, int(built.latent_channels), frames))
    _gradients(built, dec.square().mean() + sum(t.sum() for t in terms.values()), h)


def augmentation(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    import torch

    from lyra_core.interfaces import Augmentation

    _require(
        isinstance(built, Augmentation), "build() must return a lyra_core.interfaces.Augmentation"
    )
    x = _audio(ctx.channels, 32768, grad=False)  # longer than the default crop
    y = _tensor(built(x, torch.Generator().manual_seed(0)), "the output")
    _require(
        tuple(y.shape[:2]) == tuple(x.shape[:2]) and y.shape[-1] <= x.shape[-1],
        f"the output has shape {list(y.shape)}; an augmentation keeps [B, C] and at most T",
    )


def loss(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    import torch

    from lyra_core.interfaces import ModelOutput

    target = _audio(ctx.channels, ctx.segment_length, grad=False)
    reconstruction = _audio(ctx.channels, ctx.segment_length)
    terms = {n: torch.tensor(0.5, requires_grad=True) for n in ("kl", "commitment", "codebook")}
    value = built(ModelOutput(reconstruction, torch.zeros(BATCH, 4, 8), terms), target)
    _tensor(value, "the loss", ())
    _gradients(built, value)


def discriminator(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    from lyra_core.interfaces import Critique

    critiques = built(_audio(ctx.channels, ctx.segment_length))
    _require(
        isinstance(critiques, list)
        and critiques
        and all(isinstance(c, Critique) for c in critiques),
        "forward(x) must return a non-empty list of Critique",
    )
    for i, critique in enumerate(critiques):
        _tensor(critique.logits, f"critique {i}'s logits")
    _gradients(built, sum(c.logits.mean() for c in critiques))


def weight_schedule(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    import math

    for step in (0, 1, 10, 10**6):
        value = built(step)
        _require(
            isinstance(value, int | float) and math.isfinite(value),
            f"the weight at step {step} is {value!r}, not a finite number",
        )


def optimizer(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    import torch

    _require(
        isinstance(built, torch.optim.Optimizer), "build() must return a torch.optim.Optimizer"
    )


def prior(built: Any, kwargs: dict[str, Any], ctx: BuildContext) -> None:
    import torch

    from lyra_core.interfaces import Prior

    _require(isinstance(built, Prior), "build() must return a lyra_core.interfaces.Prior")
    z = _audio(kwargs["latent_channels"], LENGTH, grad=False)
    _gradients(built, _tensor(built.nll(z), "nll(z)", (BATCH,)).mean())
    generator = torch.Generator().manual_seed(0)
    shape = (BATCH, kwargs["latent_channels"], 1)
    for past in (z[..., :0], z):
        _tensor(built.next_frame(past, 1.0, generator), "next_frame(past)", shape)
    _tensor(built.next_frame(z, 0.0), "next_frame(past) at temperature 0", shape)


Contract = Callable[[Any, dict[str, Any], BuildContext], None]
CONTRACTS: dict[str, Contract] = {
    "activation": activation,
    "block": block,
    "encoder": encoder,
    "decoder": decoder,
    "filterbank": filterbank,
    "bottleneck": bottleneck,
    "augmentation": augmentation,
    "loss": loss,
    "discriminator": discriminator,
    "weight_schedule": weight_schedule,
    "optimizer": optimizer,
    "prior": prior,
}
