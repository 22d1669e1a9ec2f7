"""DDSP: a model that drives differentiable synthesizers (Engel et al. 2020, "DDSP").

The `ddsp` model (kind `model`) measures the fundamental frequency f0 (YIN) and the A-weighted
loudness of its input frame by frame, encodes log-mel frames into a "timbre" latent z, and
decodes [f0, loudness, z] with an MLP and a GRU into the controls of a harmonic oscillator bank
and of a filtered-noise synthesizer, whose sum passes through a learnable reverb.

Its latent is self-contained: per frame, the rows are z (the bottleneck's D dimensions), then f0
in Hz (row D), then loudness in dB (row D + 1). `decode(latent)` needs nothing else, so
`lyra reconstruct`, `encode`/`decode` and chunked inference work as for any model, and timbre
transfer is a decode of one sound's z rows with another's f0 and loudness rows. Decoding long
audio in chunks (`lyra reconstruct`, 10 s by default) restarts the oscillators' phases in each
chunk, so the crossfade at a seam can dip where the two chunks' phases disagree.

The synth modules (`HarmonicOscillator`, `FilteredNoise`, `LearnedReverb`) and the features
(`yin`, `a_weighted_loudness`) are plain torch code, usable on their own.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.functional import melscale_fbanks

from lyra_core import (
    BottleneckRef,
    BuildContext,
    BuildError,
    LyraError,
    hookimpl,
    interfaces,
    param,
)
from lyra_core.interfaces import AudioModel, Bottleneck
from lyra_core.validators import MAX_CHANNELS, MAX_SAMPLE_RATE, MAX_SAMPLES, between, fraction, size

MAX_HARMONICS = 1024
MAX_BANDS = 4096
MAX_LAYERS = 16
MAX_REVERB_SECONDS = 10.0
DB_RANGE = 80.0  # loudness is scaled as (dB + 80) / 80 for the decoder (DDSP's range)
LOG10 = math.log(10.0)


# -- control helpers -----------------------------------------------------------------------------


def exp_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """DDSP's positive output nonlinearity 2·sigmoid(x)^ln 10 + 1e-7 (amplitudes, magnitudes)."""
    return 2.0 * torch.sigmoid(x).pow(LOG10) + 1e-7


def upsample(controls: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame controls [B, F, ...] -> samples [B, F·hop, ...] by linear interpolation.

    Frame i sits at the centre of samples [i·hop, (i+1)·hop); the ends hold the first and last
    frame's values.
    """
    flat = controls.reshape(*controls.shape[:2], -1).transpose(1, 2)  # [B, C, F]
    out = F.interpolate(flat, scale_factor=hop, mode="linear", align_corners=False)
    return out.transpose(1, 2).reshape(controls.shape[0], -1, *controls.shape[2:])


def fft_convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Linear convolution of [..., T] signals with [..., L] responses by FFT, cropped to T."""
    n = x.shape[-1] + ir.shape[-1] - 1
    size_ = 2 ** math.ceil(math.log2(n))
    y = torch.fft.irfft(torch.fft.rfft(x, size_) * torch.fft.rfft(ir, size_), size_)
    return y[..., : x.shape[-1]]


def frame(x: torch.Tensor, hop: int, window: int) -> torch.Tensor:
    """[B, T] (T a multiple of hop) -> [B, T/hop, window] windows centred on each hop.

    Frame i is centred on the middle of samples [i·hop, (i+1)·hop); zeros beyond the ends.
    """
    left = (window - hop) // 2
    right = window - hop - left
    return F.pad(x, (left, right)).unfold(-1, window, hop)


# -- synthesizers --------------------------------------------------------------------------------


class HarmonicOscillator(nn.Module):
    """A bank of K sinusoids at k·f0 (k = 1..K), additive synthesis as in DDSP.

    `forward(f0, amplitude, distribution)`: f0 [B, F] in Hz, the overall amplitude [B, F] and a
    harmonic distribution [B, F, K] (positive; normalised here over the harmonics below
    Nyquist) -> audio [B, F·hop]. Controls are upsampled linearly to the sample rate; the phase
    is the running sum of 2π·f0/sr (harmonic k: k times it); a harmonic at or above Nyquist is
    silent at that sample (no aliasing).
    """

    def __init__(self, sample_rate: int, hop: int) -> None:
        super().__init__()
        self.sample_rate, self.hop = sample_rate, hop

    def audible(self, f0: torch.Tensor, harmonics: int) -> torch.Tensor:
        """1 where k·f0 is below Nyquist, else 0: [..., K] for f0 [...]."""
        k = torch.arange(1, harmonics + 1, device=f0.device, dtype=f0.dtype)
        return (f0.unsqueeze(-1) * k < self.sample_rate / 2).to(f0.dtype)

    def forward(
        self, f0: torch.Tensor, amplitude: torch.Tensor, distribution: torch.Tensor
    ) -> torch.Tensor:
        harmonics = distribution.shape[-1]
        distribution = distribution * self.audible(f0, harmonics)
        distribution = distribution / distribution.sum(-1, keepdim=True).clamp_min(1e-7)
        amplitudes = upsample(amplitude.unsqueeze(-1) * distribution, self.hop)  # [B, T, K]
        f0_t = upsample(f0, self.hop)  # [B, T]
        # float64 running phase, wrapped to [0, 2π), so long signals keep their tuning
        phase = torch.cumsum(2 * math.pi * f0_t.double() / self.sample_rate, dim=-1)
        phase = torch.remainder(phase, 2 * math.pi).to(f0.dtype)
        k = torch.arange(1, harmonics + 1, device=f0.device, dtype=f0.dtype)
        amplitudes = amplitudes * self.audible(f0_t, harmonics)
        return (amplitudes * torch.sin(phase.unsqueeze(-1) * k)).sum(-1)


class FilteredNoise(nn.Module):
    """White noise shaped frame by frame by a time-varying FIR filter (DDSP's filtered noise).

    `forward(magnitudes)`: per-frame magnitude responses [B, F, N] at N bands equally spaced
    from 0 Hz to Nyquist -> audio [B, F·hop]. Each frame's response becomes a linear-phase FIR
    of 2(N − 1) taps (inverse real FFT of the zero-phase response, shifted to the centre and
    Hann-windowed), which filters that frame's uniform noise in [−1, 1] by FFT convolution;
    the frames overlap-add and the filter's delay of N − 1 samples is removed.
    """

    def __init__(self, hop: int) -> None:
        super().__init__()
        self.hop = hop

    @staticmethod
    def impulse_responses(magnitudes: torch.Tensor) -> torch.Tensor:
        """[..., N] magnitudes -> [..., 2(N − 1)] centred, Hann-windowed FIRs."""
        taps = 2 * (magnitudes.shape[-1] - 1)
        ir = torch.fft.irfft(magnitudes.to(torch.complex64), n=taps)
        ir = torch.roll(ir, taps // 2, dims=-1)
        window = torch.hann_window(taps, periodic=False, device=ir.device, dtype=ir.dtype)
        return ir * window

    def forward(
        self, magnitudes: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        batch, frames, _ = magnitudes.shape
        ir = self.impulse_responses(magnitudes.float())  # [B, F, L]
        taps = ir.shape[-1]
        noise = torch.rand(
            batch, frames, self.hop, generator=generator, device=ir.device, dtype=ir.dtype
        )
        n = 2 ** math.ceil(math.log2(self.hop + taps - 1))
        pieces = torch.fft.irfft(torch.fft.rfft(2 * noise - 1, n) * torch.fft.rfft(ir, n), n)
        pieces = pieces[..., : self.hop + taps - 1]  # [B, F, hop + L − 1]
        total = (frames - 1) * self.hop + pieces.shape[-1]
        out = F.fold(
            pieces.transpose(1, 2), (1, total), kernel_size=(1, pieces.shape[-1]), stride=self.hop
        )
        start = taps // 2  # the linear-phase delay
        return out.reshape(batch, total)[:, start : start + frames * self.hop]


class LearnedReverb(nn.Module):
    """A trainable impulse response applied by FFT convolution (DDSP's learnable reverb).

    The response starts as Gaussian noise under an exponential decay that falls 60 dB in `rt60`
    seconds, scaled so the reverberated signal is 20 dB below the dry one. With `dry`, the
    output is the input plus its reverberation; without, the reverberation only.
    """

    def __init__(self, length: int, sample_rate: int, rt60: float, dry: bool) -> None:
        super().__init__()
        self.dry = dry
        t = torch.arange(length) / sample_rate
        ir = torch.randn(length) * torch.exp(-math.log(1000.0) * t / rt60)
        self.ir = nn.Parameter(0.1 * ir / ir.norm().clamp_min(1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wet = fft_convolve(x, self.ir.to(x.dtype))
        return x + wet if self.dry else wet


# -- features ------------------------------------------------------------------------------------


def _difference(frames: torch.Tensor, window: int) -> torch.Tensor:
    """YIN's difference d(τ) = Σ_{j<W} (x_j − x_{j+τ})² for τ = 0..len − W, by FFT."""
    lags = frames.shape[-1] - window + 1
    n = 2 ** math.ceil(math.log2(frames.shape[-1] + window))
    head = frames[..., :window]
    cross = torch.fft.irfft(torch.fft.rfft(frames, n) * torch.fft.rfft(head, n).conj(), n)[
        ..., :lags
    ]
    energy = F.pad(frames.square().cumsum(-1), (1, 0))  # energy[i] = Σ_{j<i} x_j²
    shifted = energy[..., window : window + lags] - energy[..., :lags]
    return (energy[..., window : window + 1] + shifted - 2 * cross).clamp_min(0)


def cumulative_mean_normalised(d: torch.Tensor) -> torch.Tensor:
    """d'(0) = 1, d'(τ) = d(τ)·τ / Σ_{j=1..τ} d(j); 1 where the sum is ~0 (silence)."""
    tau = torch.arange(d.shape[-1], device=d.device, dtype=d.dtype)
    running = d.cumsum(-1) - d[..., :1]
    quiet = running <= 1e-10 * tau.clamp_min(1)
    normed = d * tau / running.clamp_min(1e-30)
    return torch.where(quiet, torch.ones_like(d), normed)


def _pick_lag(cmnd: torch.Tensor, low: int, threshold: float) -> torch.Tensor:
    """The first lag ≥ `low` below `threshold` at a local minimum, else the global minimum."""
    part = cmnd[..., low:-1]
    dip = (part < threshold) & (part <= cmnd[..., low + 1 :])
    first = torch.where(dip.any(-1), dip.int().argmax(-1), part.argmin(-1))
    return first + low


def yin(
    audio: torch.Tensor,
    sample_rate: int,
    hop: int,
    f0_min: float = 50.0,
    f0_max: float = 2000.0,
    threshold: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 in Hz and its confidence per frame of hop samples, by YIN (de Cheveigné & Kawahara).

    `audio` [B, T] (T a multiple of hop) -> (f0 [B, T/hop], confidence [B, T/hop] in [0, 1]).
    YIN rather than torchaudio's `detect_pitch_frequency`: DDSP needs a confidence for each
    estimate, and YIN's 1 − d'(τ) is one (near 1 for periodic frames, low for noise and
    silence); it is cheap on a CPU (one FFT per frame). Steps: the difference function over an
    integration window of twice the longest period, its cumulative mean normalisation, the
    first dip below `threshold` (else the global minimum), and a parabola through the dip and
    its neighbours for a fractional lag. A frame with no periodicity at all (silence) has
    confidence 0 and reads f0_max.
    """
    max_lag = math.ceil(sample_rate / f0_min)
    min_lag = max(1, math.floor(sample_rate / f0_max))
    window = 2 * max_lag
    frames = frame(audio, hop, window + max_lag + 1)  # lags 0..max_lag + 1
    cmnd = cumulative_mean_normalised(_difference(frames, window))
    lag = _pick_lag(cmnd, min_lag, threshold)
    at = cmnd.gather(-1, torch.stack([lag - 1, lag, lag + 1], -1))
    before, here, after = at.unbind(-1)
    curve = before - 2 * here + after
    offset = torch.where(curve > 0, 0.5 * (before - after) / curve.clamp_min(1e-12), 0.0)
    period = lag.to(audio.dtype) + offset.clamp(-1, 1)
    return sample_rate / period, (1 - here).clamp(0, 1)


def a_weighting_db(freqs: torch.Tensor) -> torch.Tensor:
    """The A-weighting curve of IEC 61672 in dB at `freqs` Hz (0 dB at 1 kHz)."""
    f2 = freqs.double().square()
    ra = (12194.0**2 * f2.square()) / (
        (f2 + 20.6**2) * torch.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    )
    return (20 * torch.log10(ra.clamp_min(1e-30)) + 2.0).to(freqs.dtype)


def a_weighted_loudness(
    audio: torch.Tensor, sample_rate: int, hop: int, window: int = 1024
) -> torch.Tensor:
    """A-weighted loudness in dB per frame of hop samples: [B, T] -> [B, T/hop].

    Each Hann-windowed frame's power spectrum is weighted by the A-weighting curve and summed
    (Parseval-scaled), so an unweighted sum is the frame's windowed mean square: a 1 kHz sine
    of RMS r reads 20·log10(r) dB. Floored at −120 dB.
    """
    frames = frame(audio, hop, window)
    hann = torch.hann_window(window, device=audio.device, dtype=audio.dtype)
    power = torch.fft.rfft(frames * hann).abs().square()
    freqs = torch.fft.rfftfreq(window, 1 / sample_rate).to(audio.device, audio.dtype)
    gain = 10 ** (a_weighting_db(freqs) / 10)
    bins = torch.full_like(freqs, 2.0)
    bins[0] = 1.0
    if window % 2 == 0:
        bins[-1] = 1.0
    mean_square = (power * gain * bins).sum(-1) / (window * hann.square().sum())
    return 10 * torch.log10(mean_square + 1e-12)


# -- encoder and decoder -------------------------------------------------------------------------


def mlp(width_in: int, hidden: int, layers: int) -> nn.Sequential:
    """`layers` × (Linear, LayerNorm, LeakyReLU), as DDSP's decoder stacks."""
    parts: list[nn.Module] = []
    for i in range(layers):
        parts += [nn.Linear(width_in if i == 0 else hidden, hidden), nn.LayerNorm(hidden)]
        parts.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*parts)


class TimbreEncoder(nn.Module):
    """Log-mel frames [B, F, mels] -> features [B, out, F]: LayerNorm over the mels, then
    `layers` convolutions of kernel 3 along the frames (LeakyReLU) and a 1×1 output conv."""

    def __init__(self, mels: int, hidden: int, out_channels: int, layers: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(mels)
        convs: list[nn.Module] = []
        for i in range(layers):
            convs += [nn.Conv1d(mels if i == 0 else hidden, hidden, 3, padding=1)]
            convs.append(nn.LeakyReLU(0.2))
        self.convs = nn.Sequential(*convs, nn.Conv1d(hidden, out_channels, 1))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.convs(self.norm(logmel).transpose(1, 2))


class ControlDecoder(nn.Module):
    """[f0, loudness, z] per frame -> synth controls: MLP -> GRU -> MLP on [GRU, MLP] -> heads.

    Outputs amplitude [B, F], harmonic distribution [B, F, K] and noise magnitudes [B, F, N],
    all through `exp_sigmoid`; the noise starts about 45 dB down (a bias of −5, as DDSP).
    """

    def __init__(self, inputs: int, hidden: int, layers: int, harmonics: int, bands: int):
        super().__init__()
        self.pre = mlp(inputs, hidden, layers)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.post = mlp(2 * hidden, hidden, layers)
        self.head = nn.Linear(hidden, 1 + harmonics + bands)
        self.split = (1, harmonics, bands)

    def forward(self, controls: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.pre(controls)
        g, _ = self.gru(h)
        amp, dist, noise = self.head(self.post(torch.cat([g, h], -1))).split(self.split, -1)
        return exp_sigmoid(amp[..., 0]), exp_sigmoid(dist), exp_sigmoid(noise - 5.0)


# -- the model -----------------------------------------------------------------------------------


def hz_to_unit(f0: torch.Tensor) -> torch.Tensor:
    """f0 in Hz -> MIDI pitch / 127 (DDSP's scaling of f0 for the decoder)."""
    return (69 + 12 * torch.log2(f0.clamp_min(1.0) / 440.0)) / 127


class DDSP(AudioModel):
    """Mono audio [B, 1, T] -> latent [B, D + 2, frames] -> audio; see the module docstring.

    `timbre` is D, the count of timbre rows; `controls` names the control rows
    (`{"f0": D, "loudness": D + 1}`).
    """

    def __init__(self, spec: DDSPSpec, ctx: BuildContext, bottleneck: Bottleneck) -> None:
        super().__init__()
        self.spec, self.sample_rate, self.hop_length = spec, ctx.sample_rate, spec.hop
        self.bottleneck = bottleneck
        self.encoder = TimbreEncoder(
            spec.n_mels, spec.hidden, bottleneck.input_channels, spec.encoder_layers
        )
        self.timbre = int(bottleneck.latent_channels)  # the latent's first rows: timbre z
        # The latent rows of the controls, read by conditioned-model tools (`lyra transfer`).
        self.controls = {"f0": self.timbre, "loudness": self.timbre + 1}
        self.decoder = ControlDecoder(
            self.timbre + 2, spec.hidden, spec.mlp_layers, spec.harmonics, spec.noise_bands
        )
        self.harmonic = HarmonicOscillator(ctx.sample_rate, spec.hop)
        self.noise = FilteredNoise(spec.hop)
        reverb = round(spec.reverb_seconds * ctx.sample_rate)
        self.reverb = (
            LearnedReverb(reverb, ctx.sample_rate, spec.reverb_rt60, spec.reverb_dry)
            if reverb
            else None
        )
        bins = spec.window // 2 + 1
        with torch.device("cpu"):  # real values even when the model is built on "meta"
            mel = melscale_fbanks(bins, 0.0, ctx.sample_rate / 2, spec.n_mels, ctx.sample_rate)
        self.register_buffer("mel", mel, persistent=False)
        self.register_buffer("hann", torch.hann_window(spec.window), persistent=False)

    def _mono(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[-1] < 1:
            raise LyraError(
                f"the ddsp model takes mono audio [batch, 1, samples], got {list(x.shape)}"
            )
        frames = math.ceil(x.shape[-1] / self.hop_length)
        return F.pad(x[:, 0].float(), (0, frames * self.hop_length - x.shape[-1]))

    @torch.no_grad()
    def pitch_and_loudness(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(f0 Hz, confidence, loudness dB), each [B, frames], of mono audio [B, 1, T]."""
        audio, s = self._mono(x), self.spec
        f0, confidence = yin(audio, self.sample_rate, s.hop, s.f0_min, s.f0_max, s.yin_threshold)
        loudness = a_weighted_loudness(audio, self.sample_rate, s.hop, s.window)
        return f0, confidence, loudness

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, T] -> log-mel frames [B, frames, n_mels]."""
        spectrum = torch.fft.rfft(frame(audio, self.hop_length, self.spec.window) * self.hann)
        return torch.log(spectrum.abs().square() @ self.mel + 1e-6)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Audio -> latent [B, D + 2, frames]: z, then f0 (Hz), then loudness (dB)."""
        f0, _, loudness = self.pitch_and_loudness(x)
        with torch.autocast(x.device.type, enabled=False):
            z, terms = self.bottleneck.encode(self.encoder(self.log_mel(self._mono(x))))
        z = self.bottleneck.decoder_input(z, f0.shape[-1])
        return torch.cat([z, f0.unsqueeze(1), loudness.unsqueeze(1)], 1), terms

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Latent [B, D + 2, frames] -> audio [B, 1, length] (None: frames·hop samples)."""
        if z.dim() != 3 or z.shape[1] != self.timbre + 2:
            raise LyraError(
                f"the ddsp model decodes latents [batch, {self.timbre + 2}, frames] (timbre "
                f"z, f0 in Hz, loudness in dB), got {list(z.shape)}"
            )
        with torch.autocast(z.device.type, enabled=False):
            y = self.synthesize(z.float())
        return y if length is None else _fit(y, length)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        timbre, f0, loudness = z[:, : self.timbre], z[:, -2], z[:, -1]
        scaled = torch.stack([hz_to_unit(f0), (loudness + DB_RANGE) / DB_RANGE], -1)
        amp, dist, noise = self.decoder(torch.cat([scaled, timbre.transpose(1, 2)], -1))
        generator = None
        if not self.training:  # the same latent gives the same audio in eval
            generator = torch.Generator(z.device).manual_seed(0)
        y = self.harmonic(f0, amp, dist) + self.noise(noise, generator)
        if self.reverb is not None:
            y = self.reverb(y)
        return y.unsqueeze(1)


def _fit(y: torch.Tensor, length: int) -> torch.Tensor:
    excess = y.shape[-1] - length
    return y[..., :length] if excess >= 0 else F.pad(y, (0, -excess))


def _default_bottleneck():
    from lyra_plugins.bottlenecks import GaussianSpec

    return GaussianSpec(latent_dim=16)


@attrs.frozen(kw_only=True)
class DDSPSpec:
    """DDSP autoencoder (Engel et al. 2020): f0 and loudness measured, a timbre latent learned,
    decoded into harmonic + filtered-noise synthesis and a learnable reverb. Mono only.

    Latent per frame: the bottleneck's D dimensions, then f0 in Hz, then loudness in dB."""

    hop: int = param(
        64, doc="samples per frame (64 at 16 kHz: DDSP's 250 frames/s)", validator=size(MAX_SAMPLES)
    )
    harmonics: int = param(
        60,
        doc="sinusoids of the harmonic synthesizer, at 1..K times f0",
        validator=size(MAX_HARMONICS),
    )
    noise_bands: int = param(
        65,
        doc="bands of the noise filter's magnitude response, 0 Hz to Nyquist (FIR of 2(N-1) taps)",
        validator=size(MAX_BANDS, minimum=2),
    )
    bottleneck: BottleneckRef = param(
        factory=_default_bottleneck,
        doc="turns the timbre encoder's features into the timbre latent z (a time-series "
        "bottleneck; a single-vector one is broadcast over the frames)",
    )
    hidden: int = param(
        256,
        doc="width of the timbre encoder's convolutions and of the decoder's MLPs and GRU",
        validator=size(MAX_CHANNELS),
    )
    encoder_layers: int = param(
        3,
        doc="convolutions (kernel 3 over frames) of the timbre encoder",
        validator=size(MAX_LAYERS),
    )
    mlp_layers: int = param(
        2, doc="layers of each of the decoder's two MLPs", validator=size(MAX_LAYERS)
    )
    n_mels: int = param(
        64, doc="mel bands of the timbre encoder's log-mel input", validator=size(MAX_BANDS)
    )
    window: int = param(
        1024,
        doc="analysis window (samples) of the log-mel and loudness frames, centred on each hop",
        validator=size(MAX_SAMPLES),
    )
    f0_min: float = param(
        50.0,
        doc="lowest f0 (Hz) YIN looks for",
        validator=between(0, MAX_SAMPLE_RATE, low_open=True),
    )
    f0_max: float = param(
        2000.0,
        doc="highest f0 (Hz) YIN looks for",
        validator=between(0, MAX_SAMPLE_RATE, low_open=True),
    )
    yin_threshold: float = param(
        0.15,
        doc="YIN's threshold on the normalised difference: the first dip below it is the period",
        validator=fraction,
    )
    reverb_seconds: float = param(
        1.0,
        doc="length of the learnable reverb's impulse response in seconds (0: no reverb)",
        validator=between(0, MAX_REVERB_SECONDS),
    )
    reverb_rt60: float = param(
        0.5,
        doc="initial decay of the impulse response: seconds to fall by 60 dB",
        validator=between(0, MAX_REVERB_SECONDS, low_open=True),
    )
    reverb_dry: bool = param(
        True, doc="add the dry synthesized signal to the reverberated one (false: wet only)"
    )

    @staticmethod
    def example() -> DDSPSpec:
        """A small model for the contract tests."""
        from lyra_plugins.bottlenecks import GaussianSpec

        return DDSPSpec(
            hop=32,
            harmonics=8,
            noise_bands=9,
            bottleneck=GaussianSpec(latent_dim=4),
            hidden=16,
            mlp_layers=1,
            n_mels=16,
            window=256,
            reverb_seconds=0.01,
        )

    def check(self, ctx: BuildContext) -> None:
        nyquist = ctx.sample_rate / 2
        if ctx.channels != 1:
            raise BuildError("model", f"ddsp is mono; set data.channels to 1 (got {ctx.channels})")
        if not self.f0_min < self.f0_max < nyquist:
            raise BuildError(
                "model.f0_max",
                f"need f0_min < f0_max < sample_rate / 2 = {nyquist:g} Hz, got "
                f"f0_min={self.f0_min:g}, f0_max={self.f0_max:g}",
            )
        if self.window < self.hop:
            raise BuildError(
                "model.window", f"the window ({self.window}) must cover the hop ({self.hop})"
            )

    def build(self, ctx: BuildContext) -> AudioModel:
        self.check(ctx)
        bottleneck = self.bottleneck.build(ctx)
        if not isinstance(bottleneck, interfaces.Bottleneck):
            raise BuildError("model.bottleneck", "the built bottleneck is not a Bottleneck")
        return DDSP(self, ctx, bottleneck)


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("model", "ddsp", DDSPSpec)
