"""Datasets: the real pipeline over real files (good and broken), the cache, and synthetic audio."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import DataLoader

from lyra_core import BuildContext, LyraError, SpecError
from lyra_core.spec import structure
from lyra_core.testing import check_component
from lyra_plugins.datasets import AudioFolderSpec, FolderDataset, SyntheticSpec, audio_io, unit_hash
from lyra_plugins.datasets.cache import (
    BLOCK,
    AudioCache,
    block_energy,
    integrated_loudness,
    segment_mean_square,
)

RATE = 8000
SEGMENT = 2048


def tone(seconds: float, rate: int = RATE, freq: float = 440.0, channels: int = 2, amp=0.5):
    t = np.arange(round(seconds * rate)) / rate
    mono = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([mono * (1.0 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def ctx_for(registry, channels: int = 2, rate: int = RATE, segment: int = SEGMENT, seed=0):
    return BuildContext(
        registry=registry, sample_rate=rate, channels=channels, segment_length=segment, seed=seed
    )


def folder_spec(tmp_path: Path, *paths: Path, **kw) -> AudioFolderSpec:
    return AudioFolderSpec(paths=tuple(map(str, paths)), cache_dir=str(tmp_path / "cache"), **kw)


# -- synthetic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_synthetic_examples_have_the_contract_shape_and_level(lyra_registry, channels):
    ctx = ctx_for(lyra_registry, channels=channels, rate=16000, segment=4096)
    ds = SyntheticSpec(train_examples=6).build(ctx, "train")
    assert len(ds) == 6
    for x in ds:
        assert x.dtype == torch.float32 and x.shape == (channels, 4096)
        assert torch.isfinite(x).all()
        assert x.abs().max().item() == pytest.approx(0.95, rel=1e-5)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.shape == (3, channels, 4096)


def test_synthetic_is_deterministic_per_seed_with_its_own_validation_split(lyra_registry):
    spec = SyntheticSpec(train_examples=4, validation_examples=4)
    a = spec.build(ctx_for(lyra_registry, seed=1), "train")
    b = spec.build(ctx_for(lyra_registry, seed=1), "train")
    other_seed = spec.build(ctx_for(lyra_registry, seed=2), "train")
    validation = spec.build(ctx_for(lyra_registry, seed=1), "validation")
    assert all(torch.equal(a[i], b[i]) for i in range(4))
    assert not torch.equal(a[0], a[1])
    assert not any(torch.equal(a[i], other_seed[i]) for i in range(4))
    assert not any(torch.equal(a[i], validation[j]) for i in range(4) for j in range(4))


def test_synthetic_audio_is_tonal_stereo_and_has_transients(lyra_registry):
    ctx = ctx_for(lyra_registry, channels=2, rate=22050, segment=16384)
    ds = SyntheticSpec(train_examples=8).build(ctx, "train")
    flatness, side = [], []
    for x in ds:
        power = torch.fft.rfft(x.mean(0)).abs().pow(2)[1:] + 1e-12
        flatness.append((power.log().mean().exp() / power.mean()).item())
        side.append(((x[0] - x[1]).pow(2).mean() / x.pow(2).mean()).item())
    noise = torch.fft.rfft(torch.randn(16384)).abs().pow(2)[1:]
    noise_flatness = (noise.log().mean().exp() / noise.mean()).item()
    assert noise_flatness > 0.4
    assert np.median(flatness) < 0.05  # harmonic notes: power in a few peaks, unlike noise
    assert min(side) > 1e-4  # panned sources: left and right differ

    # A percussion-only configuration gives short bursts: far from stationary.
    hits = SyntheticSpec(train_examples=2, notes_per_second=0.0, hits_per_second=8.0)
    x = hits.build(ctx, "train")[1].mean(0)
    frames = x[: 16384 // 256 * 256].reshape(-1, 256).pow(2).mean(1)
    assert frames.max() > 20 * frames.median()  # steady noise would be within 2x


def test_synthetic_rejects_bad_settings(lyra_registry):
    with pytest.raises(ValueError, match="nothing to play"):
        SyntheticSpec(notes_per_second=0.0, hits_per_second=0.0)
    with pytest.raises(ValueError, match="lowest_note"):
        SyntheticSpec(lowest_note=90.0, highest_note=40.0)
    with pytest.raises(
        SpecError, match=r"\$\.train_examples: train_examples must be positive, got 0"
    ):
        structure({"train_examples": 0}, SyntheticSpec, lyra_registry)
    with pytest.raises(LyraError, match="unknown data split 'test'"):
        SyntheticSpec().build(ctx_for(lyra_registry), "test")


def test_contract_check_passes_for_both_datasets(lyra_registry):
    ctx = ctx_for(lyra_registry, channels=1, rate=22050, segment=8192)
    for name in ("synthetic", "audio_folder"):
        built = check_component(lyra_registry, "dataset", name, ctx)
        assert built[0].shape == (1, 8192)


# -- audio_folder: bad files lose nothing and stop nothing --------------------------------------


def write_zoo(folder: Path) -> dict[str, Path]:
    """Good files and every kind of bad file, written to disk for real."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(3):
        files[f"good{i}"] = folder / "good" / f"take{i}.wav"
        files[f"good{i}"].parent.mkdir(exist_ok=True)
        sf.write(files[f"good{i}"], tone(1.5, freq=300.0 + 100 * i), RATE)
    files["empty"] = folder / "empty.wav"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.wav"
    files["text"].write_text("this is not audio\n")
    files["header_only"] = folder / "header_only.wav"
    files["truncated_wav"] = folder / "truncated.wav"
    sf.write(files["truncated_wav"], tone(2.0), RATE, subtype="PCM_16")
    data = files["truncated_wav"].read_bytes()
    files["header_only"].write_bytes(data[:30])
    files["truncated_wav"].write_bytes(data[: len(data) // 2 + 1])
    files["truncated_flac"] = folder / "truncated.flac"
    sf.write(files["truncated_flac"], np.random.default_rng(0).uniform(-0.5, 0.5, (RATE, 2)), RATE)
    data = files["truncated_flac"].read_bytes()
    files["truncated_flac"].write_bytes(data[: len(data) // 2])
    nan = tone(1.0)
    nan[100, 0] = np.nan
    files["nan"] = folder / "nan.wav"
    sf.write(files["nan"], nan, RATE, subtype="FLOAT")
    inf = tone(1.0)
    inf[5, 1] = np.inf
    files["inf"] = folder / "inf.wav"
    sf.write(files["inf"], inf, RATE, subtype="DOUBLE")
    files["short"] = folder / "short.wav"
    sf.write(files["short"], tone(0.1), RATE)
    files["silent"] = folder / "silent.wav"
    sf.write(files["silent"], np.zeros((RATE * 2, 2), np.float32), RATE)
    six = np.zeros((RATE * 2, 6), np.float32)
    six[:, 2] = tone(2.0, channels=1)[:, 0]  # the centre channel only
    files["six"] = folder / "surround.wav"
    sf.write(files["six"], six, RATE)
    files["hires"] = folder / "hires.wav"
    sf.write(files["hires"], tone(1.0, rate=96000, freq=1000.0), 96000, subtype="PCM_24")
    files["ignored"] = folder / "readme.txt"
    files["ignored"].write_text("not an audio extension: never looked at")
    return files


def test_every_bad_file_is_skipped_with_its_reason_or_used_correctly(
    lyra_registry, tmp_path, caplog
):
    write_zoo(tmp_path / "zoo")
    spec = folder_spec(tmp_path, tmp_path / "zoo", validation_fraction=0.0)
    with caplog.at_level(logging.WARNING, logger="lyra.data"):
        index = spec.index(ctx_for(lyra_registry))
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons == {
        "empty.wav": "empty file (0 bytes)",
        "notes.wav": reasons["notes.wav"],
        "header_only.wav": reasons["header_only.wav"],
        "truncated.flac": reasons["truncated.flac"],
        "nan.wav": "1 NaN or infinite samples",
        "inf.wav": "1 NaN or infinite samples",
        "short.wav": "shorter than one segment (0.100 s < 0.256 s)",
        "silent.wav": "silent: every segment is below -40.0 dB RMS",
    }
    assert reasons["notes.wav"].startswith("cannot decode:")
    assert reasons["header_only.wav"].startswith("cannot decode:")
    assert reasons["truncated.flac"].startswith("cannot decode:")
    for name in reasons:  # each skipped file is named in a warning
        assert any(name in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    used = {f.path.name for f in index.files}
    assert used == {
        "take0.wav",
        "take1.wav",
        "take2.wav",
        "truncated.wav",
        "surround.wav",
        "hires.wav",
    }
    frames = dict(zip((f.path.name for f in index.files), index.frames, strict=True))
    assert frames["hires.wav"] == RATE  # 1 s at 96 kHz -> 1 s at 8 kHz
    assert 0 < frames["truncated.wav"] < 2 * RATE  # what is left of a cut WAV is used

    # The real pipeline runs over everything usable without an error.
    ds = spec.build(ctx_for(lyra_registry), "train")
    for batch in DataLoader(ds, batch_size=4):
        assert batch.shape[1:] == (2, SEGMENT) and torch.isfinite(batch).all()
        assert torch.allclose(batch.abs().amax(dim=(1, 2)), torch.tensor(0.95))


def test_surround_and_high_rate_files_are_converted_correctly(lyra_registry, tmp_path):
    files = write_zoo(tmp_path / "zoo")
    spec = folder_spec(
        tmp_path, files["six"], files["hires"], normalize="none", validation_fraction=0
    )
    ctx = ctx_for(lyra_registry)
    ds = spec.build(ctx, "train")
    cache = spec.cache(ctx)
    # 5.1: the centre goes to both sides at -3 dB, over the sum of coefficients (1 + 2·0.707).
    centre = tone(2.0, channels=1)[:, 0]
    left, right = np.asarray(cache.audio(files["six"]))
    expected = centre * np.sqrt(0.5) / (1 + 2 * np.sqrt(0.5))
    np.testing.assert_allclose(left, expected, atol=2e-5)  # 16-bit file
    np.testing.assert_allclose(right, expected, atol=2e-5)
    # 96 kHz 24-bit, 1 kHz tone: resampled to 8 kHz, still a clean 1 kHz tone.
    hires = np.asarray(cache.audio(files["hires"]))
    t = np.arange(hires.shape[1]) / RATE
    reference = tone(1.0, freq=1000.0).T
    middle = slice(200, -200)  # away from the edges, where the filter sees zeros
    np.testing.assert_allclose(hires[:, middle], reference[:, middle], atol=2e-3)
    assert len(t) == RATE
    assert len(ds) > 0


@pytest.mark.parametrize(
    ("have", "want", "expected"),
    [
        (1, 2, lambda d: np.stack([d[:, 0], d[:, 0]])),
        (2, 1, lambda d: d.mean(axis=1, keepdims=True).T),
        (4, 2, lambda d: np.stack([(d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2])),
        (3, 3, lambda d: d.T),
    ],
)
def test_channel_rules(have, want, expected):
    data = np.random.default_rng(have).uniform(-1, 1, (50, have)).astype(np.float32)
    np.testing.assert_allclose(audio_io.convert_channels(data, want), expected(data), atol=1e-6)


def test_an_impossible_channel_mapping_skips_the_file(lyra_registry, tmp_path):
    sf.write(tmp_path / "stereo.wav", tone(1.0), RATE)
    spec = folder_spec(tmp_path, tmp_path / "stereo.wav")
    index = spec.index(ctx_for(lyra_registry, channels=4))
    assert [s.reason for s in index.skipped] == ["cannot map 2 channels to 4"]


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "rate", "tolerance"),
    [
        ("FLAC", "PCM_16", "flac", RATE, 1e-3),
        ("AIFF", "PCM_24", "aiff", RATE, 1e-5),
        ("OGG", "VORBIS", "ogg", RATE, None),
        ("OGG", "OPUS", "opus", 48000, None),
        ("MP3", "MPEG_LAYER_III", "mp3", RATE, None),
    ],
)
def test_compressed_and_other_formats_are_read(
    lyra_registry, tmp_path, fmt, subtype, ext, rate, tolerance
):
    audio = tone(1.0, rate=rate, freq=440.0)
    sf.write(tmp_path / f"clip.{ext}", audio, rate, format=fmt, subtype=subtype)
    spec = folder_spec(tmp_path, tmp_path, normalize="none", validation_fraction=0)
    ds = spec.build(ctx_for(lyra_registry), "train")
    x = ds[0].numpy()
    reference = tone(1.0, freq=440.0).T[:, :SEGMENT]
    if tolerance is not None:  # lossless: the samples themselves
        np.testing.assert_allclose(x, reference, atol=tolerance)
    else:  # lossy (and possibly delayed): the same tone at the same level
        spectrum = np.abs(np.fft.rfft(x[0]))
        assert np.argmax(spectrum) * RATE / SEGMENT == pytest.approx(440.0, abs=RATE / SEGMENT)
        assert np.sqrt((x**2).mean()) == pytest.approx(np.sqrt((reference**2).mean()), rel=0.1)


def test_a_folder_with_no_usable_audio_is_one_clear_error(lyra_registry, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"")
    (folder / "b.wav").write_text("text")
    spec = folder_spec(tmp_path, folder)
    with pytest.raises(
        LyraError, match=r"no usable audio in .*2 file\(s\) found, all skipped"
    ) as e:
        spec.build(ctx_for(lyra_registry), "train")
    assert "a.wav: empty file" in str(e.value) and "b.wav: cannot decode" in str(e.value)
    with pytest.raises(LyraError, match="no such folder or file"):
        folder_spec(tmp_path, tmp_path / "missing").build(ctx_for(lyra_registry), "train")
    with pytest.raises(LyraError, match="no usable audio"):
        folder_spec(tmp_path, tmp_path / "bad" / "..").build(ctx_for(lyra_registry), "train")


# -- segments: silence, normalisation, split ----------------------------------------------------


def test_quiet_segments_are_rejected_and_kept_ones_peak_normalised(lyra_registry, tmp_path):
    audio = tone(2.048, amp=0.3)  # 8 segments of 2048
    audio[4 * SEGMENT :] *= 10 ** (-50 / 20)  # the second half at about -53 dB RMS
    sf.write(tmp_path / "half.wav", audio, RATE, subtype="FLOAT")
    ctx = ctx_for(lyra_registry)
    kept = folder_spec(tmp_path, tmp_path, validation_fraction=0).build(ctx, "train")
    assert sorted(start for _, start in kept.segments.tolist()) == [0, 2048, 4096, 6144]
    assert all(x.abs().max().item() == pytest.approx(0.95) for x in kept)
    raw = folder_spec(
        tmp_path, tmp_path, validation_fraction=0, silence_threshold_db=None, normalize="none"
    ).build(ctx, "train")
    assert len(raw) == 8
    starts = raw.segments[:, 1].tolist()
    for x, start in zip(raw, starts, strict=True):
        np.testing.assert_array_equal(x.numpy(), audio[start : start + SEGMENT].T)
    overlapping = folder_spec(tmp_path, tmp_path, validation_fraction=0, hop=1024)
    # Starts 0, 1024, ..., 7168: the last one is half loud (-3 dB), still kept.
    assert len(overlapping.build(ctx, "train")) == 8


# -- loudness normalisation ---------------------------------------------------------------------

LOUD_RATE = 16000


def loud_ctx(registry, channels: int = 2, rate: int = LOUD_RATE, segment: int = LOUD_RATE):
    return ctx_for(registry, channels=channels, rate=rate, segment=segment)


def loudness_spec(tmp_path: Path, *paths: Path, **kw) -> AudioFolderSpec:
    kw = {"normalize": "loudness", "validation_fraction": 0, "silence_threshold_db": None} | kw
    return folder_spec(tmp_path, *paths, **kw)


def by_file(ds: FolderDataset) -> dict[str, torch.Tensor]:
    """Each file's segments, in order, joined: [channels, frames]."""
    parts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for (number, start), x in zip(ds.segments.tolist(), ds, strict=True):
        parts.setdefault(ds.files[number].path.name, []).append((start, x))
    return {
        name: torch.cat([x for _, x in sorted(p, key=lambda q: q[0])], 1)
        for name, p in parts.items()
    }


def test_loudness_normalisation_brings_each_file_to_the_target(lyra_registry, tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    rms = 0.05  # a 440 Hz sine at -26 dBFS RMS (quieter than -20 LUFS), and loud white noise
    sf.write(folder / "sine.wav", tone(3.0, LOUD_RATE, amp=rms * np.sqrt(2)), LOUD_RATE)
    noise = np.random.default_rng(0).standard_normal((3 * LOUD_RATE, 2)) * 0.2
    sf.write(folder / "noise.wav", noise.astype(np.float32), LOUD_RATE, subtype="FLOAT")
    ctx = loud_ctx(lyra_registry)
    files = by_file(loudness_spec(tmp_path, folder).build(ctx, "train"))
    raw = by_file(loudness_spec(tmp_path, folder, normalize="none").build(ctx, "train"))
    for name in ("sine.wav", "noise.wav"):
        assert AF.loudness(files[name], LOUD_RATE).item() == pytest.approx(-20.0, abs=0.5)
        # One gain for the whole file: every segment (and sample) scaled alike.
        gain = files[name] / raw[name].where(raw[name].abs() > 1e-3, torch.nan)
        finite = gain[gain.isfinite()]
        torch.testing.assert_close(finite, torch.full_like(finite, finite[0].item()))
    assert files["sine.wav"].abs().max() > raw["sine.wav"].abs().max()  # turned up
    assert files["noise.wav"].abs().max() < raw["noise.wav"].abs().max()  # turned down


@pytest.mark.parametrize("channels", [1, 2])
def test_a_997_hz_sine_at_minus_23_lufs_has_the_ebu_reference_level(
    lyra_registry, tmp_path, channels
):
    """EBU Tech 3341: a 997 Hz sine of amplitude A in each of n channels has a loudness of
    20·log10(A) − 3.01 + 10·log10(n) LUFS (K-weighting is +0.69 dB there, offset by −0.691)."""
    rate = 48000
    sine = tone(3.0, rate, freq=997.0, channels=1, amp=0.5)
    sf.write(tmp_path / "sine.wav", np.repeat(sine, channels, axis=1), rate, subtype="FLOAT")
    ctx = loud_ctx(lyra_registry, channels=channels, rate=rate, segment=3 * rate)
    x = loudness_spec(tmp_path, tmp_path / "sine.wav", loudness_lufs=-23.0).build(ctx)[0]
    amplitude = x.abs().amax(dim=1).double()
    level = 20 * torch.log10(amplitude) - 3.01 + 10 * math.log10(channels)
    torch.testing.assert_close(level, torch.full_like(level, -23.0), atol=0.3, rtol=0)
    # Full scale reads -3.01 LUFS (torchaudio alone clamps its filters at ±1 and reads -3.28).
    full = tone(3.0, rate, freq=997.0, channels=1, amp=1.0).T
    assert integrated_loudness(full, rate) == pytest.approx(-3.01, abs=0.1)


def test_the_gain_stops_where_the_peak_reaches_the_ceiling(lyra_registry, tmp_path):
    quiet = np.random.default_rng(1).standard_normal((2 * LOUD_RATE, 2)) * 0.003
    quiet[LOUD_RATE] = 0.5  # one click: the file is quiet but its peak is high
    sf.write(tmp_path / "click.wav", quiet.astype(np.float32), LOUD_RATE, subtype="FLOAT")
    ctx = loud_ctx(lyra_registry, segment=2 * LOUD_RATE)
    x = loudness_spec(tmp_path, tmp_path, peak=0.8).build(ctx, "train")[0]
    assert x.abs().max().item() == pytest.approx(0.8, rel=1e-5)  # 0.5 · 1.6, not the full gain
    assert AF.loudness(x, LOUD_RATE).item() < -20.0 - 3.0


def test_silent_and_too_short_files_keep_their_level(lyra_registry, tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros((LOUD_RATE, 2), np.float32), LOUD_RATE)
    short = tone(0.3, LOUD_RATE, amp=0.01)  # under one 400 ms block: no loudness to measure
    sf.write(tmp_path / "short.wav", short, LOUD_RATE, subtype="FLOAT")
    ctx = loud_ctx(lyra_registry, segment=4000)
    spec = loudness_spec(tmp_path, tmp_path)
    files = by_file(spec.build(ctx, "train"))
    assert torch.equal(files["silent.wav"], torch.zeros(2, 4 * 4000))
    np.testing.assert_array_equal(files["short.wav"].numpy(), short[:4000].T)
    entries = {Path(e.source).name: e for e in spec.index(ctx).entries}
    assert entries["silent.wav"].loudness is None and entries["silent.wav"].peak == 0.0
    assert entries["short.wav"].loudness is None and entries["short.wav"].peak > 0.0


def test_the_cache_keeps_the_measurement_and_each_setting_gets_its_own_level(
    lyra_registry, tmp_path
):
    source = tmp_path / "a.wav"
    sf.write(source, tone(2.0, LOUD_RATE, amp=0.3), LOUD_RATE, subtype="FLOAT")
    ctx = loud_ctx(lyra_registry)
    loud = loudness_spec(tmp_path, source, loudness_lufs=-20.0)
    assert loud.index(ctx).decoded == 1
    at_20 = torch.stack(list(loud.build(ctx, "train")))
    # Another target over the same cache: nothing decoded again, the level 10 dB lower.
    quiet = loudness_spec(tmp_path, source, loudness_lufs=-30.0)
    assert quiet.index(ctx).decoded == 0
    at_30 = torch.stack(list(quiet.build(ctx, "train")))
    torch.testing.assert_close(at_30, at_20 * 10 ** (-10 / 20))
    # Peak normalisation over the same cache: the cached audio itself was never levelled.
    peaked = torch.stack(list(loudness_spec(tmp_path, source, normalize="peak").build(ctx)))
    torch.testing.assert_close(peaked.abs().amax(dim=(1, 2)), torch.full((2,), 0.95))
    # The measurement lives in the index entry; a changed file is decoded and measured again.
    measured = loud.index(ctx).entries[0].loudness
    assert f"loudness: {measured:.1f} to {measured:.1f} LUFS" in loud.stats(ctx)
    sf.write(source, tone(2.0, LOUD_RATE, amp=0.03), LOUD_RATE, subtype="FLOAT")
    os.utime(source, ns=(7, 7))
    index = loud.index(ctx)
    assert index.decoded == 1
    assert index.entries[0].loudness == pytest.approx(measured - 20.0, abs=0.01)
    again = torch.stack(list(loud.build(ctx, "train")))
    torch.testing.assert_close(again, at_20, atol=1e-5, rtol=1e-4)  # the same -20 LUFS


def test_loudness_normalisation_refuses_more_than_five_channels(lyra_registry, tmp_path):
    with pytest.raises(LyraError, match=r"measures at most 5 channels .* the data has 6"):
        loudness_spec(tmp_path, tmp_path).index(loud_ctx(lyra_registry, channels=6))


def test_segment_energy_from_blocks_is_bounded_by_whole_block_energies():
    audio = np.random.default_rng(3).standard_normal((2, 40 * BLOCK + 77)).astype(np.float32)
    audio[:, 3000:6000] *= 0.01
    length = 8 * BLOCK
    starts = np.arange(0, audio.shape[1] - length + 1, 37)
    square = (audio.astype(np.float64) ** 2).mean(axis=0)

    def true_sum(a: int, b: int) -> float:
        return square[max(a, 0) : b].sum()

    estimate = segment_mean_square(block_energy(audio), starts, length) * length
    for s, e in zip(starts, estimate, strict=True):
        inner = true_sum(-(-s // BLOCK) * BLOCK, (s + length) // BLOCK * BLOCK)
        outer = true_sum(s // BLOCK * BLOCK, -(-(s + length) // BLOCK) * BLOCK)
        assert inner * (1 - 1e-5) <= e <= outer * (1 + 1e-5)
    aligned = np.arange(0, 30 * BLOCK, BLOCK)  # exact on the block grid
    exact = np.array([square[s : s + length].mean() for s in aligned])
    np.testing.assert_allclose(
        segment_mean_square(block_energy(audio), aligned, length), exact, rtol=1e-5
    )


def test_the_split_is_by_path_hash_and_adding_files_moves_no_old_file(lyra_registry, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        sf.write(folder / f"f{i:02d}.wav", tone(0.3, freq=200 + 50 * i), RATE)
    spec = folder_spec(tmp_path, folder, validation_fraction=0.3)
    ctx = ctx_for(lyra_registry)

    def split_of() -> dict[str, str]:
        index = spec.index(ctx)
        return {
            index.files[n].relative: split
            for split, segs in index.segments.items()
            for n, _ in segs
        }

    before = split_of()
    expected = {f"f{i:02d}.wav": unit_hash(f"f{i:02d}.wav") < 0.3 for i in range(12)}
    assert {k: v == "validation" for k, v in before.items()} == expected
    assert set(before.values()) == {"train", "validation"}
    for i in range(12, 30):
        sf.write(folder / f"f{i:02d}.wav", tone(0.3, freq=200 + 50 * i), RATE)
    after = split_of()
    assert len(after) == 30
    assert {k: after[k] for k in before} == before
    # The validation set holds exactly the files hashed into it, and no file is in both.
    train, validation = spec.build(ctx, "train"), spec.build(ctx, "validation")
    names = {spec.find_files()[0].root}
    assert names
    assert len(train) + len(validation) == 30 * 1  # one 2048-segment per 0.3 s file


def test_a_folder_too_small_for_a_file_split_holds_out_segments(lyra_registry, tmp_path):
    sf.write(tmp_path / "one_long_file.wav", tone(8.0), RATE)
    spec = folder_spec(tmp_path, tmp_path / "one_long_file.wav", validation_fraction=0.2)
    ctx = ctx_for(lyra_registry)
    train, validation = spec.build(ctx, "train"), spec.build(ctx, "validation")
    assert len(train) + len(validation) == 31 and len(validation) > 0 and len(train) > 0
    assert not set(map(tuple, train.segments.tolist())) & set(
        map(tuple, validation.segments.tolist())
    )
    with pytest.raises(LyraError, match="the validation split is empty"):
        folder_spec(tmp_path, tmp_path, validation_fraction=0.0).build(ctx, "validation")


def test_bad_folder_settings_are_spec_errors_with_paths(lyra_registry):
    with pytest.raises(SpecError, match=r"\$\.peak: peak must be in \[1e-06, 1\], got 2.0"):
        structure({"paths": ["x"], "peak": 2.0}, AudioFolderSpec, lyra_registry)
    with pytest.raises(
        SpecError, match=r"\$\.loudness_lufs: loudness_lufs must be in \[-70, 0\], got 3.0"
    ):
        structure({"paths": ["x"], "loudness_lufs": 3.0}, AudioFolderSpec, lyra_registry)
    with pytest.raises(SpecError, match=r"\$\.normalize"):
        structure({"paths": ["x"], "normalize": "rms"}, AudioFolderSpec, lyra_registry)
    with pytest.raises(SpecError, match=r"\$\.paths: missing required field"):
        structure({}, AudioFolderSpec, lyra_registry)
    with pytest.raises(LyraError, match="'paths' is empty"):
        AudioFolderSpec(paths=()).find_files()


# -- the cache ---------------------------------------------------------------------------------


def test_a_second_epoch_and_a_second_run_decode_no_file(lyra_registry, tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    for i in range(4):
        sf.write(folder / f"song{i}.flac", tone(1.0, freq=220 * (i + 1)), RATE)
    (folder / "broken.wav").write_text("nope")
    spec = folder_spec(tmp_path, folder, validation_fraction=0)
    ctx = ctx_for(lyra_registry)
    assert spec.index(ctx).decoded == 5  # the first use decodes each file once
    ds = spec.build(ctx, "train")
    # Epochs read the cache only: they work with the source files out of reach.
    folder.rename(tmp_path / "away")
    loader = DataLoader(ds, batch_size=2, shuffle=True)
    first = torch.cat(list(loader))
    second = torch.cat(list(loader))
    (tmp_path / "away").rename(folder)
    assert first.shape == second.shape == (12, 2, SEGMENT)
    # A new run (a new dataset over the same cache) decodes nothing, the broken file included.
    assert spec.index(ctx).decoded == 0
    again = spec.build(ctx, "train")
    assert torch.equal(torch.stack(list(again)), torch.stack(list(ds)))
    # A changed file is decoded again; only it.
    sf.write(folder / "song0.flac", tone(1.0, freq=1000.0), RATE)
    os.utime(folder / "song0.flac", ns=(1, 1))  # a different mtime even on a coarse clock
    assert spec.index(ctx).decoded == 1
    changed = spec.build(ctx, "train")
    number = [f.path.name for f in changed.files].index("song0.flac")
    x = changed[[int(n) for n, _ in changed.segments].index(number)].numpy()
    assert np.argmax(np.abs(np.fft.rfft(x[0]))) * RATE / SEGMENT == pytest.approx(1000, abs=4)


def test_a_crash_mid_write_or_a_damaged_cache_is_repaired(lyra_registry, tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), RATE)
    source = tmp_path / "a.wav"
    cache = AudioCache(tmp_path / "cache", RATE, 2)
    entry = cache.prepare(source)
    assert entry.decoded and entry.frames == RATE
    assert not cache.prepare(source).decoded
    audio_file = next(cache.dir.glob("*[!y].npy"), None) or next(
        p for p in cache.dir.glob("*.npy") if not p.name.endswith(".energy.npy")
    )
    # A writer killed halfway leaves a temporary: never read, removed once stale.
    stale = cache.dir / f".{audio_file.name}.x1.tmp"
    stale.write_bytes(audio_file.read_bytes()[:100])
    os.utime(stale, (0, 0))
    fresh = cache.dir / f".{audio_file.name}.x2.tmp"
    fresh.write_bytes(b"in progress")
    assert not cache.prepare(source).decoded
    cache.remove_stale_temporaries()
    assert not stale.exists() and fresh.exists()
    # Damaged data (a partial file renamed into place by a crash of another tool, a disk
    # error) no longer matches its entry: it is prepared again, not read.
    audio_file.write_bytes(audio_file.read_bytes()[:200])
    repaired = cache.prepare(source)
    assert repaired.decoded
    np.testing.assert_array_equal(
        np.asarray(cache.audio(source)), sf.read(source, dtype="float32")[0].T
    )
    # A deleted cache under a running dataset: the next read prepares the file again.
    spec = folder_spec(tmp_path, source, validation_fraction=0)
    ds = spec.build(ctx_for(lyra_registry), "train")
    for p in spec.cache(ctx_for(lyra_registry)).dir.iterdir():
        p.unlink()
    assert ds[0].shape == (2, SEGMENT)


def test_a_reader_keeps_its_data_while_a_writer_replaces_the_file(lyra_registry, tmp_path):
    source = tmp_path / "a.wav"
    sf.write(source, tone(1.0, freq=440.0), RATE)
    spec = folder_spec(tmp_path, source, validation_fraction=0, normalize="none")
    ctx = ctx_for(lyra_registry)
    reader = spec.build(ctx, "train")
    before = reader[0].clone()  # opens the memory map
    sf.write(source, tone(1.0, freq=880.0), RATE)
    os.utime(source, ns=(5, 5))
    writer = spec.build(ctx, "train")
    assert not torch.equal(writer[0], before)
    assert torch.equal(reader[0], before)  # the open map still sees the old, complete data


def test_concurrent_preparation_by_two_processes_is_safe(lyra_registry, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    for i in range(6):
        sf.write(folder / f"s{i}.wav", tone(2.0, freq=100.0 * (i + 1)), RATE)
    script = (
        "import sys; from lyra_core import BuildContext; "
        "from lyra_plugins.datasets import AudioFolderSpec; "
        "spec = AudioFolderSpec(paths=(sys.argv[1],), cache_dir=sys.argv[2], workers=1); "
        "ctx = BuildContext(sample_rate=8000, channels=2, segment_length=2048); "
        "ds = spec.build(ctx, 'train'); "
        "print(len(ds), float(sum(x.sum() for x in ds)))"
    )
    cmd = [sys.executable, "-c", script, str(folder), str(tmp_path / "cache")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1] and outputs[0].strip()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_symlink_loops_end_and_open_files_stay_bounded(lyra_registry, tmp_path):
    folder = tmp_path / "loop"
    (folder / "inner").mkdir(parents=True)
    for i in range(5):
        sf.write(folder / "inner" / f"t{i}.wav", tone(0.3, freq=200.0 + 30 * i), RATE)
    (folder / "inner" / "back").symlink_to(folder)  # loop/inner/back -> loop
    spec = folder_spec(tmp_path, folder, validation_fraction=0)
    assert [f.relative for f in spec.find_files()] == [f"inner/t{i}.wav" for i in range(5)]
    ds = spec.build(ctx_for(lyra_registry), "train")
    bounded = FolderDataset(ds.cache, ds.files, ds.segments.tolist(), SEGMENT, 0.95, open_maps=2)
    for i in range(len(bounded)):
        torch.testing.assert_close(bounded[i], ds[i])
        assert len(bounded._maps) <= 2


def test_a_cache_that_cannot_be_written_is_one_clear_error(lyra_registry, tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), RATE)
    (tmp_path / "not_a_folder").write_text("a file where the cache should go")
    spec = AudioFolderSpec(
        paths=(str(tmp_path / "a.wav"),), cache_dir=str(tmp_path / "not_a_folder")
    )
    with pytest.raises(LyraError, match=r"could not write the audio cache .*not_a_folder is a"):
        spec.build(ctx_for(lyra_registry), "train")


def test_audio_io_keeps_no_module_state_for_tests():
    """Decoding is observed through the cache's entries (`FolderIndex.decoded`), not a counter."""
    assert not hasattr(audio_io, "files_decoded")
    state = [
        n
        for n, v in vars(audio_io).items()
        if isinstance(v, list | dict) and not n.startswith("__")
    ]
    assert state == []
