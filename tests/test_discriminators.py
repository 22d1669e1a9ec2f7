"""The built-in discriminators: shapes (mono, stereo, odd and short lengths), MSD's real
downsampling, stereo handling, norms, activations, spec errors, and the reference defaults."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lyra_core import BuildContext, BuildError, DiscriminatorRef, LyraError, SpecError
from lyra_core.interfaces import Critique
from lyra_core.interfaces import Discriminator as DiscriminatorModule
from lyra_core.spec import structure

SR = 16000
SMALL = {
    "msd": {
        "type": "msd",
        "channels": [4, 8, 8],
        "kernel_sizes": [15, 41, 5],
        "strides": [1, 4, 1],
        "groups": [1, 4, 1],
    },
    "mpd": {"type": "mpd", "periods": [2, 3, 5, 11], "channels": [4, 8, 8]},
    "mrsd": {"type": "mrsd", "windows": [256, 128], "channels": 4},
}


def build(registry, data: dict, channels: int = 1):
    spec = structure(data, DiscriminatorRef, registry)
    ctx = BuildContext(registry=registry, sample_rate=SR, channels=channels)
    return spec.build(ctx)


def audio(channels: int, length: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(seed))


def conv_length(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def expected_shapes(name: str, length: int) -> list[tuple[int, ...]]:
    """Logit shapes [1, ...] per sub-discriminator, from conv arithmetic on the small specs."""
    spec = SMALL[name]
    if name == "msd":
        shapes, n = [], length
        for _ in range(3):
            m = n
            for k, s in zip(spec["kernel_sizes"], spec["strides"], strict=True):
                m = conv_length(m, k, s, k // 2)
            shapes.append((1, m))
            n = conv_length(n, 4, 2, 2)  # AvgPool1d(4, 2, padding=2) before the next scale
        return shapes
    if name == "mpd":
        shapes = []
        for p in spec["periods"]:
            h = math.ceil(length / p)
            for s in (3, 3, 1):
                h = conv_length(h, 5, s, 2)
            shapes.append((1, h, p))
        return shapes
    shapes = []
    for window in spec["windows"]:
        bins = window // 2 + 1
        edges = [int(f * bins) for f in (0, 0.1, 0.25, 0.5, 0.75, 1)]
        width = 0
        for lo, hi in itertools.pairwise(edges):
            w = hi - lo
            for s in (1, 2, 2, 2):
                w = conv_length(w, 9, s, 4)
            width += w
        shapes.append((1, length // (window // 4) + 1, width))
    return shapes


def feature_count(name: str) -> int:
    return 5 * 5 if name == "mrsd" else len(SMALL[name]["channels"])


@pytest.mark.parametrize("name", ["msd", "mpd", "mrsd"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("length", [1000, 1331])
def test_output_shapes(registry, name, channels, length):
    disc = build(registry, SMALL[name], channels)
    assert isinstance(disc, DiscriminatorModule)
    with torch.no_grad():
        critiques = disc(audio(channels, length))
    assert [tuple(c.logits.shape) for c in critiques] == [
        (2, *shape) for shape in expected_shapes(name, length)
    ]
    for critique in critiques:
        assert isinstance(critique, Critique)
        assert len(critique.features) == feature_count(name)
        assert all(f.shape[0] == 2 and torch.isfinite(f).all() for f in critique.features)
        assert critique.logits is not critique.features[-1]


@pytest.mark.parametrize("name", ["msd", "mpd", "mrsd"])
def test_audio_shorter_than_periods_and_windows(registry, name):
    disc = build(registry, SMALL[name])
    with torch.no_grad():
        critiques = disc(audio(1, 7))  # shorter than period 11 and half of every window
    assert critiques and all(torch.isfinite(c.logits).all() for c in critiques)


@pytest.mark.parametrize("name", ["msd", "mpd", "mrsd"])
def test_stereo_channels_are_input_channels(registry, name):
    """Both channels reach the logits: changing only the right channel changes the verdict."""
    disc = build(registry, SMALL[name], channels=2)
    x = audio(2, 1024)
    changed = x.clone()
    changed[:, 1] = audio(1, 1024, seed=5)[:, 0]
    with torch.no_grad():
        before, after = disc(x), disc(changed)
    for a, b in zip(before, after, strict=True):
        assert not torch.allclose(a.logits, b.logits)


@pytest.mark.parametrize("name", ["msd", "mpd", "mrsd"])
def test_wrong_channel_count_is_a_clear_error(registry, name):
    disc = build(registry, SMALL[name], channels=2)
    with pytest.raises(LyraError, match=r"expected \[B, 2, T\] audio"):
        disc(audio(1, 1024))
    with pytest.raises(LyraError, match="expected"):
        disc(torch.zeros(2, 1024))


@pytest.mark.parametrize("name", ["msd", "mpd", "mrsd"])
def test_gradients_reach_input_and_every_parameter(registry, name):
    disc = build(registry, SMALL[name])
    x = audio(1, 1001).requires_grad_()
    critiques = disc(x)
    total = sum(c.logits.mean() + sum(f.mean() for f in c.features) for c in critiques)
    total.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in disc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_msd_scales_see_halved_rates(registry):
    msd = build(registry, SMALL["msd"])
    length = 4000
    inputs = msd.scale_inputs(audio(1, length))
    assert [x.shape[-1] for x in inputs] == [4000, 2001, 1001]

    def level_db(frequency: float, scale: int) -> float:
        """Level of a tone at `frequency` cycles/sample at scale `scale`, rel. to scale 0."""
        t = torch.arange(length, dtype=torch.float32)
        tone = torch.sin(2 * math.pi * frequency * t).view(1, 1, -1)
        seen = msd.scale_inputs(tone)
        trim = lambda x: x[..., 50:-50]  # noqa: E731 (edges are padded)
        return 10 * math.log10(trim(seen[scale]).square().mean() / trim(tone).square().mean())

    # scale 2 runs at sr/4: its Nyquist is 0.125 cycles/sample of the input.
    assert level_db(0.3, 2) < -20  # above it: gone (audiocraft's MSD would pass it at 0 dB)
    assert level_db(0.01, 2) > -1  # well below it: kept


def test_msd_forward_judges_the_downsampled_audio(registry):
    msd = build(registry, SMALL["msd"])
    x = audio(1, 2048)
    with torch.no_grad():
        critiques = msd(x)
        pooled = msd.pool(msd.pool(x))
        direct = msd.stacks[2](pooled)
    torch.testing.assert_close(critiques[2].logits, direct.logits)


def test_mpd_folds_samples_period_apart(registry):
    mpd = build(registry, SMALL["mpd"])
    x = torch.arange(10, dtype=torch.float32).view(1, 1, 10)
    folded = mpd.periods[1].fold(x)  # period 3: pad 10 to 12 by reflection
    assert folded.shape == (1, 1, 4, 3)
    assert folded[0, 0, :, 0].tolist() == [0, 3, 6, 9]
    assert folded[0, 0, -1].tolist() == [9, 8, 7]


@pytest.mark.parametrize(
    ("norm", "kind"), [("weight", "_WeightNorm"), ("spectral", "_SpectralNorm"), ("none", None)]
)
@pytest.mark.parametrize("name", ["msd", "mpd", "mrsd"])
def test_norm_option(registry, name, norm, kind):
    disc = build(registry, {**SMALL[name], "norm": norm})
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
    assert convs
    for conv in convs:
        if kind is None:
            assert not parametrize.is_parametrized(conv)
        else:
            assert [type(p).__name__ for p in conv.parametrizations.weight] == [kind]
    with torch.no_grad():
        assert all(torch.isfinite(c.logits).all() for c in disc(audio(1, 1024)))


@pytest.mark.parametrize("name", ["mpd", "mrsd"])
def test_any_activation_on_2d_maps(registry, name):
    """Per-channel activations (Snake) work on the Conv2d stacks' [B, C, H, W] maps."""
    disc = build(
        registry,
        {**SMALL[name], "activation": {"type": "snake", "alpha": 0.5, "implementation": "eager"}},
        2,
    )
    snakes = [m for m in disc.modules() if type(m).__name__ == "Snake"]
    assert snakes
    critiques = disc(audio(2, 1024))
    sum(c.logits.mean() for c in critiques).backward()
    assert all(s.alpha.grad is not None and s.alpha.grad.abs().sum() > 0 for s in snakes)


def test_mrsd_spectrogram_and_bands(registry):
    mrsd = build(registry, {"type": "mrsd", "windows": [2048], "channels": 4}, channels=2)
    resolution = mrsd.resolutions[0]
    assert resolution.hop == 512
    assert resolution.bands == [(0, 102), (102, 256), (256, 512), (512, 768), (768, 1025)]
    x = audio(2, 4096)
    spectrum = resolution.spectrogram(x)
    assert spectrum.shape == (2, 4, 4096 // 512 + 1, 1025)
    reference = torch.stft(x[:, 1], 2048, 512, window=torch.hann_window(2048), return_complex=True)
    torch.testing.assert_close(spectrum[:, 2], reference.real.transpose(1, 2))
    torch.testing.assert_close(spectrum[:, 3], reference.imag.transpose(1, 2))


def test_mrsd_under_bf16_autocast(registry):
    mrsd = build(registry, SMALL["mrsd"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        critiques = mrsd(audio(1, 1024))
    assert all(torch.isfinite(c.logits.float()).all() for c in critiques)


def test_combined_concatenates_members_in_order(registry):
    combined = build(registry, {"type": "combined", "members": [SMALL["mpd"], SMALL["mrsd"]]}, 2)
    mpd, mrsd = combined.members
    x = audio(2, 1024)
    with torch.no_grad():
        critiques = combined(x)
        separate = mpd(x) + mrsd(x)
    assert len(critiques) == 4 + 2
    for a, b in zip(critiques, separate, strict=True):
        torch.testing.assert_close(a.logits, b.logits)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "combined", "members": []}, r"\$\.members: members must not be empty"),
        ({"type": "combined"}, r"\$\.members: missing required field"),
        (
            {"type": "combined", "members": [{"type": "msd", "channels": [8, 8]}]},
            r"\$\.members\[0\]: channels, kernel_sizes, strides and groups differ in length",
        ),
        ({"type": "msd", "groups": [1, 3, 16, 16, 16, 16, 1]}, r"groups\[1\] = 3 must divide"),
        ({"type": "mpd", "kernel_size": 4}, r"\$\.kernel_size: .* odd"),
        ({"type": "mpd", "periods": []}, r"\$\.periods: periods must not be empty"),
        ({"type": "mrsd", "bands": [0, 0.5, 0.4, 1]}, r"\$\.bands: .*strictly increasing"),
        ({"type": "mrsd", "bands": [0.1, 1]}, r"\$\.bands: .*from 0 to 1"),
        ({"type": "mrsd", "hop_factor": 0}, r"\$\.hop_factor"),
        ({"type": "mrsd", "norm": "batch"}, r"\$\.norm"),
    ],
)
def test_spec_errors_name_their_path(registry, data, message):
    with pytest.raises(SpecError, match=message):
        structure(data, DiscriminatorRef, registry)


def test_build_errors(registry):
    with pytest.raises(BuildError, match="8-sample window has 5 bins"):
        build(registry, {"type": "mrsd", "windows": [8]})
    with pytest.raises(BuildError, match=r"msd.groups\[0\]"):
        build(registry, {**SMALL["msd"], "groups": [2, 4, 1]}, channels=1)


def test_defaults_follow_the_references(registry):
    """HiFi-GAN's MPD and MSD stacks, DAC's MRD bands (the big stacks built on the meta device;
    the benchmarks run them)."""
    with torch.device("meta"):
        mpd, msd = build(registry, {"type": "mpd"}), build(registry, {"type": "msd"})
    assert [p.period for p in mpd.periods] == [2, 3, 5, 7, 11]
    stack = mpd.periods[0].stack
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in stack.convs] == [
        (1, 32, (5, 1), (3, 1)),
        (32, 128, (5, 1), (3, 1)),
        (128, 512, (5, 1), (3, 1)),
        (512, 1024, (5, 1), (3, 1)),
        (1024, 1024, (5, 1), (1, 1)),
    ]
    assert (stack.post.in_channels, stack.post.out_channels, stack.post.kernel_size) == (
        1024,
        1,
        (3, 1),
    )
    assert all(a.activation.negative_slope == 0.1 for a in stack.activations)

    assert len(msd.stacks) == 3
    assert [
        (c.out_channels, c.kernel_size[0], c.stride[0], c.groups) for c in msd.stacks[0].convs
    ] == [
        (128, 15, 1, 1),
        (128, 41, 2, 4),
        (256, 41, 2, 16),
        (512, 41, 4, 16),
        (1024, 41, 4, 16),
        (1024, 41, 1, 16),
        (1024, 5, 1, 1),
    ]

    mrsd = build(registry, {"type": "mrsd"})
    assert [(r.n_fft, r.hop, len(r.bands)) for r in mrsd.resolutions] == [
        (2048, 512, 5),
        (1024, 256, 5),
        (512, 128, 5),
    ]
    with torch.no_grad():
        assert len(mrsd(audio(1, 4096, batch=1))) == 3


@pytest.mark.parametrize("length", [64, 1000, 1024, 1025])
def test_dac_framing_gives_ceil_length_over_hop_frames(lyra_registry, length):
    mrsd = build(lyra_registry, {**SMALL["mrsd"], "framing": "match_stride"})
    for window, resolution in zip((256, 128), mrsd.resolutions, strict=True):
        spectrum = resolution.spectrogram(audio(1, length))
        assert spectrum.shape[-2] == math.ceil(length / (window // 4))


def test_dac_padding_adds_a_whole_period_to_a_multiple(lyra_registry):
    mpd = build(lyra_registry, {**SMALL["mpd"], "pad": "whole_period"})
    plain = build(lyra_registry, SMALL["mpd"])
    x = audio(1, 66)  # a multiple of 2, 3 and 11, not of 5
    for ours, theirs, p in zip(mpd.periods, plain.periods, (2, 3, 5, 11), strict=True):
        assert ours.fold(x).shape[-2] == 66 // p + 1
        assert theirs.fold(x).shape[-2] == math.ceil(66 / p)


def test_peak_normalisation_makes_the_judgement_gain_and_offset_free(lyra_registry):
    members = [SMALL["mpd"]]
    spec = {"type": "combined", "members": members, "normalize_peak": 0.8}
    combined = build(lyra_registry, spec).eval()
    x = audio(1, 512)
    with torch.no_grad():
        a, b = combined(x), combined(3.0 * x + 0.5)
    for one, other in zip(a, b, strict=True):
        torch.testing.assert_close(one.logits, other.logits, atol=1e-5, rtol=1e-4)
