"""Descriptor sliders of `lyra explore`: the descriptors on synthetic signals, the ridge fit, the
cache beside the PCA, and sliders that raise what they are named after on a trained model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lyra_core.explore.descriptors import (
    NAMES,
    Descriptors,
    describe_frames,
    fit_descriptors,
    frame_windows,
    loudness_db,
    pitch,
    spectral_centroid,
    spectral_flatness,
)
from lyra_core.explore.explorer import PCA, Explorer, Sound, apply_sliders, load_or_fit_sliders
from lyra_core.services.chunking import encode_audio
from lyra_core.services.model import load_model
from lyra_core.training import train

from .test_explore import GAUSSIAN, RATE, make_run, plugins, tiny_spec  # noqa: F401

SECONDS = 0.5
STEPS = 10  # training steps of the DDSP model


def sine(freq: float, amplitude: float = 0.3) -> torch.Tensor:
    t = torch.arange(round(SECONDS * RATE)) / RATE
    return amplitude * torch.sin(2 * math.pi * freq * t)


def windows(x: torch.Tensor) -> torch.Tensor:
    """Frames of 384 samples (48 ms) every 64 samples of a signal [T]."""
    return frame_windows(x[None, None], 64, x.numel() // 64, 384)[0]


# -- the descriptors ----------------------------------------------------------------------------


def test_a_louder_sine_is_louder_by_its_gain_in_db():
    quiet, loud = loudness_db(windows(sine(220, 0.1))), loudness_db(windows(sine(220, 0.4)))
    assert torch.allclose(loud - quiet, torch.full_like(loud, 20 * math.log10(4)), atol=0.05)
    assert abs(float(loud.mean()) - 20 * math.log10(0.4 / math.sqrt(2))) < 0.1  # RMS of a sine
    assert float(loudness_db(windows(torch.zeros(4000))).max()) == -100.0


@pytest.mark.parametrize("freq", [80.0, 220.0, 440.0, 1000.0])
def test_a_sines_centroid_and_pitch_are_its_frequency(freq):
    frames = windows(sine(freq))
    centroid = spectral_centroid(frames, RATE)
    f0, periodicity = pitch(frames, RATE)
    assert torch.allclose(centroid, torch.full_like(centroid, freq), rtol=0.03)
    assert torch.allclose(f0, torch.full_like(f0, freq), rtol=0.01)
    assert float(periodicity.min()) > 0.9


def test_a_harmonic_tone_has_its_fundamental_and_a_higher_centroid():
    tone = sine(220) + sine(440, 0.2) + sine(660, 0.2)
    frames = windows(tone)
    f0 = pitch(frames, RATE)[0]
    assert torch.allclose(f0, torch.full_like(f0, 220.0), rtol=0.01)
    assert float(spectral_centroid(frames, RATE).mean()) > 300
    higher = spectral_centroid(windows(sine(880)), RATE)
    assert float(higher.mean()) > float(spectral_centroid(windows(sine(220)), RATE).mean())


def test_noise_is_flat_and_has_no_pitch_silence_has_neither():
    noise = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 0.3
    noisy, tonal = spectral_flatness(windows(noise)), spectral_flatness(windows(sine(440)))
    assert float(noisy.min()) > 0.3 and float(tonal.max()) < 0.01
    f0, periodicity = pitch(windows(noise), RATE)
    assert bool(f0.isnan().all()) and float(periodicity.max()) < 0.5
    silent = windows(torch.zeros(4000))
    assert bool(spectral_centroid(silent, RATE).isnan().all())
    assert bool(spectral_flatness(silent).isnan().all()) and bool(
        pitch(silent, RATE)[0].isnan().all()
    )


def test_frames_share_analysis_windows_when_the_hop_is_short():
    x = torch.cat([sine(220, 0.05), sine(220, 0.5)])  # quiet, then loud
    values = describe_frames(x[None, None], RATE, 16, x.numel() // 16)
    assert values.shape == (1, x.numel() // 16, len(NAMES))
    loud = values[0, :, NAMES.index("loudness")]
    assert float(loud[-10:].mean() - loud[:10].mean()) == pytest.approx(20.0, abs=0.5)
    steady = torch.cat([values[0, :230], values[0, 270:]])  # away from the step in level
    pitches = steady[:, NAMES.index("pitch")]
    assert torch.allclose(pitches, torch.full_like(pitches, 57.0), atol=0.2)  # A3 = MIDI 57


# -- the fit -------------------------------------------------------------------------------------


def test_the_ridge_fit_finds_the_direction_its_gain_and_skips_what_it_cannot_fit():
    gen = torch.Generator().manual_seed(0)
    spread = torch.tensor([1.0, 10.0, 0.1])  # dimensions in very different units
    rows = torch.randn(2000, 3, generator=gen) * spread
    values = torch.full((2000, len(NAMES)), math.nan)
    values[:, 0] = 3.0 * rows[:, 0] / 1.0 + 0.1 * torch.randn(2000, generator=gen)
    values[:1000, 1] = -2.0 * rows[:1000, 2] / 0.1  # defined on half the rows
    values[:2, 2] = 1.0  # too few rows: no slider
    fitted = fit_descriptors(rows, values)
    assert fitted.names == ("loudness", "brightness")
    assert torch.allclose(fitted.directions[0].abs(), torch.tensor([1.0, 0.0, 0.0]), atol=0.01)
    assert torch.allclose(fitted.directions[1], torch.tensor([0.0, 0.0, -1.0]), atol=0.01)
    assert torch.allclose(fitted.scales, torch.tensor([1.0, 0.1]), rtol=0.08)
    assert torch.allclose(fitted.gains, torch.tensor([3.0, 2.0]), rtol=0.08)
    assert float(fitted.r2.min()) > 0.99
    # one slider step moves the descriptor by the gain (the true weights, less ridge shrinkage)
    step = fitted.offset([1.0])
    assert float(step @ torch.tensor([3.0, 0.0, 0.0])) == pytest.approx(
        float(fitted.gains[0]), rel=0.02
    )
    again = Descriptors.from_state(fitted.to_state())
    assert again.names == fitted.names and torch.equal(again.directions, fitted.directions)


def test_descriptor_sliders_come_after_the_pca_sliders():
    pca = PCA(torch.zeros(2), torch.eye(2)[:1], torch.tensor([2.0]), torch.tensor([0.5]))
    found = Descriptors(
        ("loudness",), torch.tensor([[0.0, 1.0]]), torch.tensor([3.0]), torch.ones(1), torch.ones(1)
    )
    z = torch.zeros(1, 2, 5)
    moved = apply_sliders(z, pca, [1.0, -1.0], found)
    assert torch.allclose(moved[0, :, 0], torch.tensor([2.0, -3.0]))
    assert torch.equal(apply_sliders(z, pca, [1.0, -1.0]), apply_sliders(z, pca, [1.0], found))


# -- in the explorer ------------------------------------------------------------------------------


def test_descriptors_are_cached_with_the_pca_and_refitted_without_them(tmp_path, plugins):  # noqa: F811
    run = make_run(tmp_path / "run", tiny_spec(GAUSSIAN), plugins)
    ex = Explorer.open(load_model(run, plugins, device="cpu"), components=2)
    cache = run / "explore" / "pca.pt"
    state = torch.load(cache, weights_only=True)
    names = state["descriptors"]["names"]
    assert ex.descriptors is not None and tuple(names) == ex.descriptors.names
    assert {"loudness", "brightness"} <= set(names) and set(names) <= set(NAMES)
    assert state["descriptors"]["directions"].shape == (len(names), 4)
    assert ex.slider_count == 2 + len(names) and "descriptor sliders: loudness" in ex.describe()
    del state["descriptors"]  # a cache from before descriptor sliders: refitted
    torch.save(state, cache)
    _, refitted = load_or_fit_sliders(ex.loaded, cache, 2, 64)
    assert refitted.names == ex.descriptors.names
    assert "descriptors" in torch.load(cache, weights_only=True)


def ddsp_spec() -> dict:
    """A tiny DDSP model on the synthetic dataset's notes (its latent: z, f0 in Hz, loudness)."""
    spec = tiny_spec(GAUSSIAN, "tiny_descriptors")
    spec["data"].update(segment_length=4096, batch_size=4)
    spec["data"]["dataset"].update(train_examples=8, validation_examples=6)
    spec["model"] = {
        "type": "ddsp",
        "hop": 64,
        "harmonics": 16,
        "noise_bands": 16,
        "bottleneck": {"type": "deterministic", "latent_dim": 2},
        "hidden": 16,
        "encoder_layers": 1,
        "mlp_layers": 1,
        "n_mels": 16,
        "window": 256,
        "f0_min": 60.0,
        "f0_max": 1500.0,
        "reverb_seconds": 0.05,
    }
    spec["losses"] = [{"type": "multi_resolution_stft"}]
    spec["training"] = {
        "steps": STEPS,
        "optimizer": {"type": "adam", "lr": 0.003},
        "validate_every": 10_000,
        "checkpoint_every": STEPS,
        "log_every": 10_000,
        "validation_batches": 1,
        "validation_examples": 0,
    }
    return spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory, plugins) -> Explorer:  # noqa: F811
    folder = tmp_path_factory.mktemp("descriptors")
    (folder / "spec.json").write_text(json.dumps(ddsp_spec()))
    train(plugins, str(folder / "spec.json"), run_dir=str(folder / "run"), device="cpu")
    return Explorer.open(load_model(folder / "run", plugins, device="cpu"), components=2)


def measured(ex: Explorer, name: str, value: float) -> float:
    """The descriptor `name` of the validation examples decoded with its slider at `value`."""
    assert ex.descriptors is not None
    values = [0.0] * ex.slider_count
    values[ex.pca.count + ex.descriptors.names.index(name)] = value
    ctx = ex.loaded.spec.context(ex.loaded.registry)
    dataset = ex.loaded.spec.data.dataset.build(ctx, "validation")
    batch = torch.stack([dataset[i] for i in range(len(dataset))]).float()
    z = encode_audio(ex.loaded, batch, ex.chunking)
    audio = torch.stack(
        [ex.render(Sound(z[i : i + 1], batch.shape[-1], "v"), values) for i in range(len(z))]
    )
    frames = describe_frames(audio, RATE, ex.loaded.hop_length, z.shape[-1])
    return float(np.nanmean(frames[..., NAMES.index(name)].numpy()))


def test_each_descriptor_slider_raises_its_descriptor(trained):
    found = trained.descriptors
    assert found is not None and {"loudness", "brightness"} <= set(found.names)
    for name in found.names:
        still, up = measured(trained, name, 0.0), measured(trained, name, 1.0)
        gain = float(found.gains[found.names.index(name)])
        print(f"{name}: {up - still:+.3f} per slider unit (the fit's: {gain:+.3f})")
        assert up > still, name
