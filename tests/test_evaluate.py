"""`lyra evaluate`: DAC's distances, exact bitrates, baselines at the same rate, the report.

The speech the tests score is made here (a source-filter model), so they need no system files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import lfilter

from lyra_core.cli import main
from lyra_core.context import BuildContext
from lyra_core.inference import baselines
from lyra_core.inference.evaluate import quantize_uniform, transmission
from lyra_core.interfaces import ModelOutput
from lyra_core.services import metrics
from lyra_core.services.audio import read_audio
from lyra_core.services.model import load_model

from .helpers import train_spec
from .test_inference import TINY
from .test_losses import slaney_mel_filters

# (F1, F2, F3) of five vowels in Hz (Peterson and Barney's averages for men's voices)
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
          "o": (570, 840, 2410), "u": (300, 870, 2240)}  # fmt: skip


def spoken(word: str, rate: int, seed: int) -> np.ndarray:
    """Speech by a source-filter model: per letter a syllable, a glottal pulse train of falling
    pitch through the vowel's formants, or for 's' differentiated noise; short pauses between."""
    rng = np.random.default_rng(seed)
    n, parts = int(0.22 * rate), []
    for k, letter in enumerate(word):
        if letter == "s":
            sound = 0.1 * lfilter([1, -2, 1], [1], rng.standard_normal(n))
        else:
            f0 = np.linspace(150, 110, n) * (1 + 0.01 * rng.standard_normal(n)) - 8 * k
            pulses = np.diff(np.floor(np.cumsum(f0 / rate)), prepend=0.0)  # one a period
            sound = lfilter([1], [1, -0.95], pulses)  # each glottal pulse's fall
            for formant, bandwidth in zip(VOWELS[letter], (80, 100, 150), strict=True):
                r = np.exp(-np.pi * bandwidth / rate)
                a = [1, -2 * r * np.cos(2 * np.pi * formant / rate), r * r]
                sound = lfilter([sum(a)], a, sound)  # a resonance of gain 1 at 0 Hz
        parts += [sound * np.hanning(n), np.zeros(int(0.06 * rate))]
    audio = np.concatenate(parts)
    return (0.45 * audio / np.abs(audio).max()).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[Path]:
    """Two spoken clips, 48 kHz mono WAV, alone in a folder."""
    folder = tmp_path_factory.mktemp("speech")
    for seed, word in enumerate(("asoeiu", "oiasue")):
        sf.write(folder / f"{word}.wav", spoken(word, 48000, seed), 48000, subtype="PCM_16")
    return sorted(folder.glob("*.wav"))


def built(registry, rate: int) -> dict[str, torch.nn.Module]:
    return metrics.distance_losses(registry, BuildContext(registry=registry, sample_rate=rate))


def out(x: torch.Tensor) -> ModelOutput:
    return ModelOutput(x, x.new_zeros(0))


def dac_mel_distance(pred: torch.Tensor, target: torch.Tensor, sr: int) -> float:
    """DAC's MelSpectrogramLoss() at its defaults, written out (librosa's Slaney filters)."""
    total = 0.0
    for win, mels in ((2048, 150), (512, 80)):
        fb = torch.from_numpy(slaney_mel_filters(sr, win, mels)).float()

        def mel(x, win=win, fb=fb):
            window = torch.hann_window(win)
            spec = torch.stft(x.reshape(-1, x.shape[-1]), win, win // 4, window=window,
                              return_complex=True)  # fmt: skip
            return fb @ spec.abs()

        x, y = mel(pred), mel(target)
        total += float((x.clamp(1e-5).pow(2).log10() - y.clamp(1e-5).pow(2).log10()).abs().mean())
        total += float((x - y).abs().mean())
    return total


@pytest.fixture(scope="module")
def noisy_pair() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    target = 0.1 * torch.randn(2, 1, 20000, generator=gen)
    return target + 0.05 * torch.randn(target.shape, generator=gen), target


def test_mel_distance_is_dacs_definition(registry, noisy_pair):
    pred, target = noisy_pair
    ours = float(built(registry, 44100)["mel_distance"](out(pred), target))
    assert ours == pytest.approx(dac_mel_distance(pred, target, 44100), rel=1e-4)


def test_stft_distance_equals_dacs_multiscale_stft_loss(registry, noisy_pair):
    audiotools = pytest.importorskip("audiotools", reason="the reference packages (Makefile)")
    from dac.nn.loss import MultiScaleSTFTLoss

    pred, target = noisy_pair
    ours = float(built(registry, 44100)["stft_distance"](out(pred), target))
    signal = audiotools.AudioSignal
    theirs = float(MultiScaleSTFTLoss()(signal(pred, 44100), signal(target, 44100)))
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_uniform_latent_quantization_has_its_levels_and_error():
    z = torch.randn(1, 3, 500) * torch.tensor([1.0, 10.0, 0.1])[:, None]
    q = quantize_uniform(z, 4)
    for d in range(3):
        assert q[0, d].unique().numel() <= 16
        step = float(z[0, d].max() - z[0, d].min()) / 15
        assert float((q[0, d] - z[0, d]).abs().max()) <= step / 2 + 1e-5


def test_baselines_spend_what_they_say(speech):
    audio = read_audio(speech[0], 16000, 1)
    found = {b.name: b for b in baselines.baselines_for(audio, 16000, 24000.0, 3000.0)}
    assert found["mu_law"].bits_per_second == 3000 * 8  # 8-bit μ-law at 3 kHz
    assert found["resample"].bits_per_second == 3000 * 32  # as many floats as the model sends
    assert abs(found["opus"].bits_per_second - 24000) < 6000  # the level search lands near
    for b in found.values():
        decoded = b.roundtrip(audio)
        assert decoded.shape == audio.shape and np.isfinite(decoded).all()


def test_opus_at_more_bits_sounds_closer(registry, speech):
    audio = read_audio(speech[0], 16000, 1)
    losses = built(registry, 16000)
    target = torch.from_numpy(audio)[None]
    scores = []
    for kbps in (8, 48):
        opus = baselines.ogg("OPUS", 16000, audio, kbps * 1000.0)
        decoded = torch.from_numpy(opus.roundtrip(audio))[None]
        scores.append(metrics.metrics(decoded, target, losses))
    assert scores[1]["mel_distance"] < scores[0]["mel_distance"]
    assert scores[1]["si_sdr"] > scores[0]["si_sdr"]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, plugins) -> dict[str, Path]:
    """A continuous-latent run and a multi-scale RVQ run, each trained for one step."""
    rvq = {
        **TINY["model"],
        "bottleneck": {"type": "rvq", "dim": 8, "n_codebooks": 2, "codebook_size": 16,
                       "codebook_dim": 4, "strides": [2, 1]},
    }  # fmt: skip
    runs = {}
    for name, model, losses in (
        ("gaussian", TINY["model"], TINY["losses"]),
        ("rvq", rvq, [{"type": "l1"}]),
    ):
        spec = {**TINY, "name": name, "model": model, "losses": losses}
        spec["training"] = {**TINY["training"], "steps": 1, "checkpoint_every": 1}
        runs[name] = train_spec(spec, tmp_path_factory.mktemp(name), "run", plugins)
    return runs


def test_a_quantizers_bitrate_is_exact(run_dirs, plugins):
    loaded = load_model(run_dirs["rvq"], plugins, "cpu")
    frames_per_second = loaded.sample_rate / loaded.hop_length
    t = transmission(loaded)
    # two codebooks of 16 codes (4 bits), the first at half the frame rate
    assert t.bits_per_second == pytest.approx(frames_per_second * (0.5 + 1) * 4)


def test_a_continuous_latents_bitrate_follows_its_precision(run_dirs, plugins):
    loaded = load_model(run_dirs["gaussian"], plugins, "cpu")
    values = loaded.sample_rate / loaded.hop_length * 4  # latent_dim 4
    assert transmission(loaded).bits_per_second == pytest.approx(values * 32)
    assert transmission(loaded, latent_bits=6).bits_per_second == pytest.approx(values * 6)


def test_evaluate_reports_the_model_and_baselines(run_dirs, speech, tmp_path, capsys):
    report_file = tmp_path / "report.json"
    args = ["evaluate", "--run", str(run_dirs["gaussian"]), str(speech[0].parent), "--baselines"]
    args += ["--latent-bits", "8", "--json", str(report_file), "--no-visqol", "-o", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "real-time factor" in printed and "8-bit uniform" in printed
    report = json.loads(report_file.read_text())
    assert {"model", "mu_law", "resample", "opus", "vorbis"} <= set(report["systems"])
    model = report["systems"]["model"]
    assert model["bits_per_second"] == pytest.approx(report["transmission"]["bits_per_second"])
    for system in report["systems"].values():
        assert set(system["mean"]) == {"mel_distance", "stft_distance", "si_sdr"}
        assert all(math.isfinite(v) for v in system["mean"].values())
    files = {Path(r["file"]).name for r in report["files"]}
    assert files == {p.name for p in speech}
    assert all(v > 0 for v in report["real_time_factor"].values())
    assert len(list((tmp_path / "opus").glob("*.wav"))) == len(files)


def test_visqol_scores_a_clean_copy_above_a_noisy_one(speech):
    pytest.importorskip("visqol", reason="the eval extra: pip install -e '.[eval]'")
    audio = read_audio(speech[0], 48000, 1)
    noisy = audio + 0.05 * np.random.default_rng(0).standard_normal(audio.shape).astype("float32")
    assert metrics.visqol(audio, audio, 48000) > metrics.visqol(noisy, audio, 48000) + 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such.wav"], "no such file or folder"),
        (["--latent-bits", "0", "{speech}"], "--latent-bits 0"),
    ],
)
def test_evaluate_mistakes_are_one_line(run_dirs, speech, args, message, capsys):
    args = [a.format(speech=speech[0]) for a in args]
    assert main(["evaluate", "--run", str(run_dirs["gaussian"]), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_stoi_and_pesq_rank_a_clean_copy_above_a_noisy_one(speech):
    pytest.importorskip("pesq", reason="the eval extra: pip install -e '.[eval]'")
    audio = read_audio(speech[0], 16000, 1)
    noisy = audio + 0.05 * np.random.default_rng(0).standard_normal(audio.shape).astype("float32")
    clean, degraded = (
        metrics.speech_scores(audio, audio, 16000),
        metrics.speech_scores(noisy, audio, 16000),
    )
    assert clean["stoi"] == pytest.approx(1.0, abs=1e-3)
    assert 0 < degraded["stoi"] < clean["stoi"]
    assert clean["pesq"] > 4.4 and 1 <= degraded["pesq"] < clean["pesq"] - 1


def test_evaluate_skips_unreadable_files_and_lists_conversions(run_dirs, speech, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "speech.wav").write_bytes(speech[0].read_bytes())  # 48 kHz mono
    stereo = np.stack([read_audio(speech[1], 8000, 1)[0]] * 2, axis=1)
    sf.write(folder / "stereo.flac", stereo, 8000)  # the model's rate, two channels
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "empty.ogg").write_bytes(b"")
    report_file = tmp_path / "report.json"
    args = ["evaluate", "--run", str(run_dirs["gaussian"]), str(folder), "--no-visqol"]
    assert main([*args, "--speech", "--json", str(report_file)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "broken.wav" in printed and "empty.ogg" in printed
    report = json.loads(report_file.read_text())
    assert {Path(f).name for f in report["skipped"]} == {"broken.wav", "empty.ogg"}
    assert {Path(f).name: v for f, v in report["converted"].items()} == {
        "speech.wav": "48000 Hz, 1 channel -> 8000 Hz, 1 channel",
        "stereo.flac": "8000 Hz, 2 channels -> 8000 Hz, 1 channel",
    }
    assert {Path(r["file"]).name for r in report["files"]} == {"speech.wav", "stereo.flac"}
    assert set(report["systems"]["model"]["mean"]) >= {"stoi", "pesq"}


def test_evaluate_refuses_when_no_file_is_readable(run_dirs, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    assert main(["evaluate", "--run", str(run_dirs["gaussian"]), str(broken), "--no-visqol"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 file(s) could be read" in err and "broken.wav" in err
    assert "Traceback" not in err


def test_evaluating_a_run_without_checkpoints_is_one_error(run_dirs, speech, tmp_path, capsys):
    (tmp_path / "spec.json").write_text((run_dirs["gaussian"] / "spec.json").read_text())
    assert main(["evaluate", "--run", str(tmp_path), str(speech[0]), "--no-visqol"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint yet" in err and "Traceback" not in err
