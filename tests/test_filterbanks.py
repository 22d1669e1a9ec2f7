"""PQMF and identity filterbanks: shapes, reconstruction per band count, the classic-form oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import signal

from lyra_core import BuildContext, LyraError
from lyra_plugins.filterbanks import (
    PQMFSpec,
    kaiser_lowpass,
    nyquist_residue,
    polyphase_filters,
    pqmf_bank,
    pqmf_prototype,
)

BANDS = [2, 4, 8, 16, 32]
SAMPLE_RATE = 44100
EDGE = 512  # samples of zero-padding transient excluded at each end
# Reconstruction SNR floors in dB (white noise, 20 Hz–20 kHz log sweep) at 100 dB attenuation.
SNR_FLOOR = {2: (60, 59), 4: (60, 59), 8: (60, 59), 16: (60, 58), 32: (60, 58)}


def build(registry, name: str = "pqmf", **fields):
    return registry.get("filterbank", name).spec(**fields).build(BuildContext(registry=registry))


def classic_analysis(x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Oracle: each band filtered at full rate and decimated (strided conv), [B, 1, T]."""
    half = bank.shape[-1] // 2
    return F.conv1d(x, bank[:, None], stride=bank.shape[0], padding=half)


def classic_synthesis(y: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Oracle: zero-stuff each band by M, filter with the time-reversed band filter, sum, ×M."""
    bands, half = bank.shape[0], bank.shape[-1] // 2
    stuffed = torch.zeros(*y.shape[:2], y.shape[-1] * bands, dtype=y.dtype)
    stuffed[..., ::bands] = y * bands
    return F.conv1d(stuffed, bank.flip(-1)[None], padding=half)


def snr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x[..., EDGE:-EDGE].double(), y[..., EDGE:-EDGE].double()
    return float(10 * torch.log10(x.pow(2).sum() / (x - y).pow(2).sum()))


def sweep(length: int) -> torch.Tensor:
    t = np.arange(length) / SAMPLE_RATE
    return torch.tensor(signal.chirp(t, 20, t[-1], 20000, method="logarithmic"))[None, None]


def test_identity_filterbank(registry):
    fb = build(registry, "identity")
    x = torch.randn(2, 3, 101)
    assert fb.bands == 1
    assert fb.analysis(x) is x and fb.synthesis(x) is x


@pytest.mark.parametrize("bands", [*BANDS, 64])
def test_shapes_fold_channels_into_bands(registry, bands):
    fb = build(registry, bands=bands)
    x = torch.randn(2, 3, 64 * bands)
    y = fb.analysis(x)
    assert fb.bands == bands
    assert y.shape == (2, 3 * bands, 64)
    # channel c's bands are rows c·M .. c·M+M-1, equal to analysing that channel alone
    torch.testing.assert_close(y[:, bands : 2 * bands], fb.analysis(x[:, 1:2]))
    assert fb.synthesis(y).shape == x.shape


@pytest.mark.parametrize("bands", BANDS)
def test_polyphase_equals_classic_oracle(registry, bands):
    fb = build(registry, bands=bands).double()
    # the module keeps float32 filters; give the oracle the same rounded coefficients
    bank = torch.tensor(pqmf_bank(bands, 100.0), dtype=torch.float32).double()
    gen = torch.Generator().manual_seed(bands)
    x = torch.randn(2, 1, 48 * bands, generator=gen, dtype=torch.float64)
    y = fb.analysis(x)
    torch.testing.assert_close(y, classic_analysis(x, bank), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fb.synthesis(y), classic_synthesis(y, bank), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bands", BANDS)
def test_reconstruction_snr(registry, bands):
    fb = build(registry, bands=bands)
    length = 2**17
    noise = torch.randn(1, 1, length, generator=torch.Generator().manual_seed(0))
    chirp = sweep(length).float()
    with torch.no_grad():
        noise_snr = snr_db(noise, fb.synthesis(fb.analysis(noise)))
        sweep_snr = snr_db(chirp, fb.synthesis(fb.analysis(chirp)))
    noise_floor, sweep_floor = SNR_FLOOR[bands]
    assert noise_snr >= noise_floor, f"{bands} bands: noise SNR {noise_snr:.2f} dB"
    assert sweep_snr >= sweep_floor, f"{bands} bands: sweep SNR {sweep_snr:.2f} dB"


def test_no_delay_between_input_and_reconstruction(registry):
    fb = build(registry, bands=16)
    x = torch.zeros(1, 1, 4096)
    x[..., 2000] = 1.0
    y = fb.synthesis(fb.analysis(x))
    assert int(y.abs().argmax()) == 2000


def test_sine_lands_in_its_band(registry):
    bands = 8
    fb = build(registry, bands=bands)
    t = torch.arange(8192, dtype=torch.float64)
    for k in range(bands):
        x = torch.sin((k + 0.5) * torch.pi / bands * t).float()[None, None]
        energy = fb.analysis(x)[0, :, 64:-64].pow(2).sum(-1)
        assert energy[k] / energy.sum() > 0.999


def test_synthesis_is_m_times_the_adjoint_of_analysis(registry):
    bands = 4
    fb = build(registry, bands=bands).double()
    x = torch.randn(2, 2, 256, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2 * bands, 64, dtype=torch.float64)
    (fb.analysis(x) * v).sum().backward()
    torch.testing.assert_close(x.grad * bands, fb.synthesis(v))


def test_runs_under_bf16_autocast(registry):
    fb = build(registry, bands=4)
    x = torch.randn(1, 1, 4096)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fb.synthesis(fb.analysis(x))
    assert y.dtype == torch.bfloat16
    assert snr_db(x, y.float()) > 20


def test_length_not_a_multiple_of_bands_is_rejected(registry):
    fb = build(registry, bands=16)
    with pytest.raises(LyraError, match=r"length 1001 is not a multiple of 16 bands.*1008"):
        fb.analysis(torch.randn(1, 1, 1001))
    with pytest.raises(LyraError, match=r"\[batch, channels, time\]"):
        fb.analysis(torch.randn(1, 1024))
    with pytest.raises(LyraError, match=r"channels·16"):
        fb.synthesis(torch.randn(1, 15, 64))


@pytest.mark.parametrize("bands", [0, 1, 3, 12, 128])
def test_bands_must_be_a_power_of_two_up_to_64(bands):
    with pytest.raises(ValueError, match="power of two from 2 to 64"):
        PQMFSpec(bands=bands)


def test_attenuation_range_is_validated():
    with pytest.raises(ValueError, match="attenuation"):
        PQMFSpec(attenuation=5.0)


def test_filters_are_cached_and_kept_as_buffers(registry):
    a, b = build(registry, bands=8), build(registry, bands=8)
    assert polyphase_filters(8, 100.0) is polyphase_filters(8, 100.0)
    torch.testing.assert_close(a.analysis_weight, b.analysis_weight, rtol=0, atol=0)
    assert {"analysis_weight", "synthesis_weight"} <= dict(a.named_buffers()).keys()
    assert a.state_dict() == {}  # derived from the spec, not checkpointed
    assert a.double().analysis_weight.dtype == torch.float64


@pytest.mark.parametrize("bands", [2, 16])
def test_optimised_cutoff_beats_the_starting_guess(bands):
    h = pqmf_prototype(bands, 100.0)
    assert len(h) % 2 == 1
    assert nyquist_residue(h, bands) * 10 < nyquist_residue(kaiser_lowpass(1 / bands, 100.0), bands)
