"""The seed's LyraCodec VAE (experiments/lyracodec_vae.json): exact parameter count and shapes.

Seed 001 gives the architecture and the count, 255,858,050. Where its prose is silent, the choices
that reproduce the count exactly are: no weight norm; SnakeBeta (α and β per channel) everywhere;
encoder input conv k7 and output conv k3; decoder input conv k3 and output conv k7; every block's
residual units at the block's input width (the decoder's "units, then upsample"); biases on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lyra_core.cli import main
from lyra_core.cli.summary import build_on_meta, summarize, summarize_spec
from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.loader import load_spec

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "lyracodec_vae.json"
REGISTRY = load_plugins().registry
SEED_ENCODER = {
    "encoder.input_conv": "[1, 128, 88200]",
    "encoder.blocks.0": "[1, 128, 44100]",
    "encoder.blocks.1": "[1, 256, 11025]",
    "encoder.blocks.2": "[1, 512, 2756]",
    "encoder.blocks.3": "[1, 1024, 344]",
    "encoder.blocks.4": "[1, 2048, 43]",
    "encoder.output": "[1, 128, 43]",
    "bottleneck.posterior": "[1, 64, 43], [1, 64, 43]",  # μ, log σ²
}


pytestmark = pytest.mark.usefixtures("small_and_eager")


def seed_001_count(base: int = 128, mults=(1, 2, 4, 8, 16), strides=(2, 4, 4, 8, 8)) -> int:
    """The parameter count written out from seed 001's prose and the choices above."""

    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k + cout

    def snake(c: int) -> int:
        return 2 * c  # α and β

    def units(c: int) -> int:  # 3 × (snake, conv k7, snake, conv k1)
        return 3 * (2 * snake(c) + conv(c, c, 7) + conv(c, c, 1))

    widths = [base * m for m in (1, *mults)]
    pairs = list(zip(widths[:-1], widths[1:], strides, strict=True))
    encoder = conv(2, base, 7) + snake(widths[-1]) + conv(widths[-1], 2 * 64, 3)
    encoder += sum(units(i) + snake(i) + conv(i, o, 2 * s) for i, o, s in pairs)
    decoder = conv(64, widths[-1], 3) + snake(base) + conv(base, 2, 7)
    decoder += sum(units(o) + snake(o) + conv(o, i, 2 * s) for i, o, s in pairs)
    return encoder + decoder


@pytest.fixture(scope="module")
def summary():
    return summarize_spec(load_spec(SPEC, REGISTRY), REGISTRY)


def test_parameter_count_is_the_seeds(summary):
    assert seed_001_count() == 255_858_050
    assert summary.total_params == summary.trainable_params == 255_858_050


def test_encoder_shape_table_is_the_seeds(summary):
    rows = {s.name: s.output for s in summary.stages}
    assert {name: rows[name] for name in SEED_ENCODER} == SEED_ENCODER
    assert summary.latent_shape == "[1, 64, 43]"
    assert summary.output_shape == "[1, 2, 88200]"
    assert summary.hop_length == 2048


def test_architecture_choices():
    spec = load_spec(SPEC, REGISTRY)
    ctx = BuildContext(registry=REGISTRY, channels=2, segment_length=88200)
    model = build_on_meta(spec, ctx)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.ConvTranspose1d)]
    assert not any(parametrize.is_parametrized(c) for c in convs)  # no weight norm
    snakes = [m for m in model.modules() if hasattr(m, "alpha")]
    assert len(snakes) == 2 * (5 * 7 + 1)  # 3 units × 2 + 1 per block, + 1 per coder
    assert all(s.logscale and s.beta is not None for s in snakes)
    assert model.encoder.input_conv.kernel_size == (7,)
    assert model.encoder.output[-1].kernel_size == (3,)
    assert model.decoder.input_conv.kernel_size == (3,)
    assert model.decoder.output.conv.kernel_size == (7,)
    assert not model.decoder.output.amplitude_modulation and not model.decoder.output.tanh


def test_snake_beta_starts_at_zero_in_log_space():
    spec = load_spec(
        SPEC, REGISTRY, ["model.encoder.base_channels=2", "model.decoder.base_channels=2"]
    )
    model = spec.model.build(BuildContext(registry=REGISTRY, channels=2))
    snakes = [m for m in model.modules() if hasattr(m, "alpha")]
    assert snakes and all(torch.equal(s.alpha, torch.zeros_like(s.alpha)) for s in snakes)
    assert all(torch.equal(s.beta, torch.zeros_like(s.beta)) for s in snakes)


def test_narrow_copy_runs_for_real_with_the_summarys_shapes():
    """The same architecture at width 4 on the CPU: real shapes equal the meta summary's."""
    overrides = ["model.encoder.base_channels=4", "model.decoder.base_channels=4"]
    spec = load_spec(SPEC, REGISTRY, overrides)
    ctx = BuildContext(registry=REGISTRY, channels=2, segment_length=88200)
    torch.manual_seed(0)
    model = spec.model.build(ctx).eval()
    real = {}
    for name, module in model.named_modules():
        if name in SEED_ENCODER or name in ("decoder.blocks.0", "decoder.output"):
            module.register_forward_hook(
                lambda m, i, o, n=name: real.update({n: str(list(o.shape))}) and None
            )
    with torch.no_grad():
        out = model(torch.randn(1, 2, 88200))
    assert out.reconstruction.shape == (1, 2, 88200) and torch.isfinite(out.reconstruction).all()
    meta = {s.name: s.output for s in summarize(model.to("meta"), (1, 2, 88200)).stages}
    assert real == {name: meta[name] for name in real}
    assert real["encoder.blocks.4"] == "[1, 64, 43]" and real["decoder.output"] == "[1, 2, 88064]"


def test_cli_summary(capsys):
    assert main(["summary", str(SPEC), "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "total parameters: 255,858,050" in out
    assert "input [1, 2, 44100]" in out and "latent: [1, 64, 21]" in out
    assert main(["summary", str(SPEC), "--seconds", "-1"]) == 2
    assert "argument --seconds: -1: expected a value in (0, 86400]" in capsys.readouterr().err
