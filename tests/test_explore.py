"""`lyra explore` without a browser: PCA cache, slider maths, presets, export and bad uploads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import lyra_core.explore
from lyra_core.cli import main
from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.explore import explorer as explore
from lyra_core.explore.explorer import (
    PCA,
    Explorer,
    apply_sliders,
    export_audio,
    fit_pca,
    list_presets,
    load_or_fit_sliders,
    load_preset,
    save_preset,
)
from lyra_core.loader import resolved, validate_data
from lyra_core.services import checkpoint
from lyra_core.services.model import load_model

from .helpers import NO_TRACKING, RATE, autoencoder, synthetic_data


def tiny_spec(bottleneck: dict, name: str = "tiny_explore") -> dict:
    """A small model on synthetic data at 8 kHz (hop 16 with 4 PQMF bands)."""
    return {
        "name": name,
        "seed": 1,
        "data": synthetic_data(validation_examples=6, batch_size=3),
        "model": autoencoder(bottleneck),
        "losses": [{"type": "l1"}],
        "training": {"steps": 1, "optimizer": {"type": "adam", "lr": 0.001}},
        "tracking": NO_TRACKING,
    }


GAUSSIAN = {"type": "gaussian", "latent_dim": 4}
FLOW_VECTOR = {
    "type": "realnvp",
    "latent_dim": 4,
    "single_vector": True,
    "depth": 2,
    "hidden": 8,
    "prior": "flow",
    "identity_init": False,
}


def make_run(folder: Path, spec_data: dict, plugins) -> Path:
    """A run directory with an untrained model's checkpoint (as training would write it)."""
    spec = validate_data(spec_data, plugins.registry)
    d = spec.data
    ctx = BuildContext(
        registry=plugins.registry,
        sample_rate=d.sample_rate,
        channels=d.channels,
        segment_length=d.segment_length,
        seed=spec.seed,
    )
    torch.manual_seed(spec.seed)
    model = spec.model.build(ctx)
    data = resolved(spec, plugins.registry)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(data, indent=2))
    state = {
        "format": checkpoint.FORMAT,
        "step": 1,
        "model": model.state_dict(),
        "spec": (folder / "spec.json").read_text(),
        "plugins": plugins.versions(),
    }
    checkpoint.save_atomic(state, folder / "checkpoints" / "last.pt")
    return folder


def tone(seconds: float, rate: int = RATE, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(6 * np.pi * freq * t)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


@pytest.fixture(scope="module")
def series(tmp_path_factory, plugins) -> Explorer:
    """An explorer on a time-series (Gaussian) latent."""
    run = make_run(tmp_path_factory.mktemp("explore") / "run", tiny_spec(GAUSSIAN), plugins)
    return Explorer.open(load_model(run, plugins, device="cpu"), components=3, max_seconds=2.0)


@pytest.fixture(scope="module")
def vector(tmp_path_factory, plugins) -> Explorer:
    """An explorer on a single-vector latent with a RealNVP posterior and prior."""
    spec = tiny_spec(FLOW_VECTOR, "tiny_vector")
    run = make_run(tmp_path_factory.mktemp("explore") / "run", spec, plugins)
    return Explorer.open(load_model(run, plugins, device="cpu"), components=3)


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, tone(0.25), RATE)
    return path


# -- PCA ----------------------------------------------------------------------------------------


def test_fit_pca_finds_the_directions_and_their_spread():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(5, 5, generator=gen))[0]
    spread = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.25])
    rows = (torch.randn(4000, 5, generator=gen) * spread) @ basis.T + 3.0
    pca = fit_pca(rows, 3)
    assert pca.count == 3
    assert torch.allclose(pca.components @ pca.components.T, torch.eye(3), atol=1e-5)
    assert torch.allclose(pca.components.abs(), basis.T[:3].abs(), atol=0.05)
    assert torch.allclose(pca.scales, spread[:3], rtol=0.05)
    assert torch.allclose(pca.mean, torch.full((5,), 3.0), atol=0.2)
    assert float(pca.explained.sum()) < 1
    with pytest.raises(LyraError, match="at least two"):
        fit_pca(rows[:1], 3)


def test_pca_is_cached_as_plain_tensors_and_refitted_for_a_new_checkpoint(series, monkeypatch):
    cache = series.run_dir / "explore" / "pca.pt"
    state = torch.load(cache, weights_only=True)
    assert state["components"].shape == (3, 4) and json.loads(state["key"])["step"] == 1
    assert series.pca.examples == 6  # every validation example of the spec's dataset

    fits = []
    real = explore.validation_latents
    monkeypatch.setattr(
        explore, "validation_latents", lambda *a, **k: fits.append(1) or real(*a, **k)
    )
    again = load_or_fit_sliders(series.loaded, cache, 3, 64)[0]
    assert not fits and torch.equal(again.components, series.pca.components)

    ckpt = series.loaded.checkpoint
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a newer checkpoint
    try:
        refitted = load_or_fit_sliders(series.loaded, cache, 3, 64)[0]
    finally:
        os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fits == [1] and refitted.key != series.pca.key
    load_or_fit_sliders(series.loaded, cache, 2, 64)  # other settings: refitted too
    assert fits == [1, 1]
    with pytest.raises(LyraError, match="must be > 0"):
        Explorer.open(series.loaded, components=0)
    cache.write_bytes(b"not a torch file")
    pca, _ = load_or_fit_sliders(series.loaded, cache, 3, 64)
    assert pca.count == 3  # a corrupt cache: refitted


# -- sliders -------------------------------------------------------------------------------------


def test_sliders_offset_every_frame_of_a_time_series_latent():
    pca = PCA(
        torch.zeros(3),
        torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]]),
        torch.tensor([2.0, 0.5]),
        torch.tensor([0.7, 0.2]),
    )
    z = torch.randn(1, 3, 7)
    assert torch.equal(apply_sliders(z, pca, [0.0, 0.0]), z)
    moved = apply_sliders(z, pca, [1.5, -2.0])
    offset = torch.tensor([1.5 * 2.0, -2.0 * 0.5 * 0.6, -2.0 * 0.5 * 0.8])
    assert torch.allclose(moved - z, offset[None, :, None].expand_as(z))
    vec = torch.randn(1, 3)
    assert torch.allclose(apply_sliders(vec, pca, [1.0]) - vec, torch.tensor([[2.0, 0.0, 0.0]]))
    with pytest.raises(LyraError, match="expected a latent"):
        apply_sliders(torch.zeros(3), pca, [1.0])


def test_a_slider_changes_the_sound_of_a_time_series_latent(series, wav):
    sound = series.from_file(wav)
    assert sound.latent.shape == (1, 4, 2000 // 16 + (2000 % 16 > 0))
    still = series.render(sound, [0.0, 0.0, 0.0])
    moved = series.render(sound, [2.0, 0.0, 0.0])
    assert still.shape == moved.shape == (1, 2000)
    assert (moved - still).abs().max() > 1e-4
    values = series.metrics(sound, still)
    assert {"si_sdr"} <= set(values) and all(np.isfinite(list(values.values())))


def test_single_vector_flow_latents_sample_interpolate_and_move(vector, wav, tmp_path):
    assert vector.loaded.single_vector and vector.pca.components.shape[1] == 4
    sound = vector.from_file(wav)
    assert sound.latent.shape == (1, 4)
    still, moved = vector.render(sound, [0.0]), vector.render(sound, [0.0, 3.0])
    assert (moved - still).abs().max() > 1e-5

    drawn = vector.from_prior(seed=3, temperature=0.5, seconds=0.1)
    assert drawn.latent.shape == (1, 4) and drawn.length == 800
    again = vector.from_prior(seed=3, temperature=0.5, seconds=0.1)
    assert torch.equal(drawn.latent, again.latent)
    assert vector.render(drawn, [1.0]).shape == (1, 800)

    other = tmp_path / "other.wav"
    sf.write(other, tone(0.2, freq=440.0), RATE)
    second = vector.from_file(other)
    assert torch.allclose(vector.between(sound, second, 0.0).latent, sound.latent, atol=1e-5)
    assert torch.allclose(vector.between(sound, second, 1.0).latent, second.latent, atol=1e-5)
    assert vector.between(sound, second, 0.5).length == 1600


@pytest.mark.parametrize(
    "bottleneck",
    [
        {"type": "deterministic", "latent_dim": 4},
        {"type": "single_vector", "latent_dim": 4},
        {"type": "realnvp", "latent_dim": 4, "depth": 1, "hidden": 8, "identity_init": False},
        {"type": "rvq", "dim": 8, "n_codebooks": 2, "codebook_size": 16, "strides": [1, 2]},
    ],
    ids=lambda b: b["type"],
)
def test_every_bottleneck_moves_and_samples(bottleneck, plugins, tmp_path, wav):
    run = make_run(tmp_path / "run", tiny_spec(bottleneck), plugins)
    ex = Explorer.open(load_model(run, plugins, device="cpu"), components=2)
    sound = ex.from_file(wav)
    still, moved = ex.render(sound, [0.0, 0.0]), ex.render(sound, [2.0, -1.0])
    assert still.shape == (1, 2000) and (moved - still).abs().max() > 1e-5
    drawn = ex.from_prior(seed=0, temperature=1.0, seconds=0.1)
    assert ex.render(drawn, [1.0, 0.0]).shape == (1, 800)


def test_time_series_interpolation_is_cut_to_the_shorter_file(series, wav, tmp_path):
    other = tmp_path / "short.wav"
    sf.write(other, tone(0.1), RATE)
    mid = series.between(series.from_file(wav), series.from_file(other), 0.5)
    assert mid.latent.shape[-1] == 50 and mid.length == 800
    with pytest.raises(LyraError, match="seconds"):
        series.from_prior(0, 1.0, 0.0)


# -- presets -------------------------------------------------------------------------------------


def test_presets_round_trip_by_name(tmp_path):
    folder = tmp_path / "presets"
    assert list_presets(folder) == []
    path = save_preset(folder, " bright-1 ", [0.5, -1.25, 2.0], "abc")
    assert path == folder / "bright-1.json"
    assert json.loads(path.read_text())["sliders"] == [0.5, -1.25, 2.0]
    assert load_preset(folder, "bright-1", 3) == [0.5, -1.25, 2.0]
    assert load_preset(folder, "bright-1", 4) == [0.5, -1.25, 2.0, 0.0]  # more sliders now
    save_preset(folder, "loud", [9.0])
    assert load_preset(folder, "loud", 2) == [3.0, 0.0]  # clamped to the slider range
    assert list_presets(folder) == ["bright-1", "loud"]
    for bad in ("", "../escape", ".hidden", "a/b"):
        with pytest.raises(LyraError, match="preset name"):
            save_preset(folder, bad, [0.0])
    with pytest.raises(LyraError, match="no preset named"):
        load_preset(folder, "missing", 2)
    (folder / "broken.json").write_text('{"sliders": "x"}')
    with pytest.raises(LyraError, match="not a preset file"):
        load_preset(folder, "broken", 2)


# -- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate", "bits", "subtype"),
    [
        ("flac", 16000, "24", "PCM_24"),
        ("wav", None, "16", "PCM_16"),
        ("wav", 22050, "float", "FLOAT"),
    ],
)
def test_export_writes_the_format_rate_and_depth_asked_for(tmp_path, fmt, rate, bits, subtype):
    audio = torch.from_numpy(tone(0.5))[None]
    path = export_audio(audio, RATE, tmp_path, "a sound/1", fmt, rate, bits)
    info = sf.info(str(path))
    assert path.name == f"a_sound_1.{fmt}"
    assert info.format == fmt.upper() and info.subtype == subtype
    assert info.samplerate == (rate or RATE) and info.channels == 1
    assert abs(info.frames - 0.5 * (rate or RATE)) <= 1
    again = export_audio(audio, RATE, tmp_path, "a sound/1", fmt, rate, bits)
    assert again.name == f"a_sound_1-2.{fmt}" and path.is_file()  # never overwritten


def test_export_refuses_what_cannot_be_written(tmp_path):
    audio = torch.zeros(1, 100)
    with pytest.raises(LyraError, match="FLAC stores integers"):
        export_audio(audio, RATE, tmp_path, "x", "flac", None, "float")
    with pytest.raises(LyraError, match="export format"):
        export_audio(audio, RATE, tmp_path, "x", "mp3")
    with pytest.raises(LyraError, match="bit depth"):
        export_audio(audio, RATE, tmp_path, "x", "wav", None, "8")
    with pytest.raises(LyraError, match="export rate"):
        export_audio(audio, RATE, tmp_path, "x", "wav", 10)


def test_the_explorer_exports_its_sound_into_the_run(series, wav):
    sound = series.from_file(wav)
    path = series.export(sound, series.render(sound, [1.0]), "flac", 16000, "16")
    assert path.parent == series.run_dir / "explore" / "exports" and path.name == "tone.flac"
    assert sf.info(str(path)).samplerate == 16000


def test_the_explorer_exports_a_lyra_file_that_decodes_to_the_sound(series, wav):
    from lyra_core.services.compress import open_codec

    sound = series.from_file(wav)
    audio = series.render(sound, [1.0])
    path = series.export(sound, audio, "lyra", None, "16")
    assert path.suffix == ".lyra" and path.parent == series.run_dir / "explore" / "exports"
    codec = open_codec(series.loaded, chunking=series.chunking)
    decoded = codec.decode(path.read_bytes(), path.name)
    assert torch.equal(decoded, codec.decode(codec.encode(audio[None]), "same"))
    assert decoded.shape[-1] == audio.shape[-1]


# -- bad uploads ---------------------------------------------------------------------------------


def test_bad_uploads_are_one_clear_message(series, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(3 * RATE, np.float32), RATE)
    silent = tmp_path / "frames0.wav"
    sf.write(silent, np.zeros(0, np.float32), RATE)
    for path, match in [
        (None, "no file"),
        (tmp_path / "gone.wav", "gone"),
        (empty, "empty"),
        (text, "not an audio file"),
        (silent, "no audio frames"),
        (long, "too long"),
    ]:
        with pytest.raises(LyraError, match=match):
            series.from_file(path)


# -- the command ---------------------------------------------------------------------------------


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    monkeypatch.delitem(sys.modules, "lyra_core.explore.page", raising=False)
    monkeypatch.delattr(lyra_core.explore, "page", raising=False)  # `from ... import page`
    assert main(["explore", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: lyra explore needs Gradio: install with pip install -e '.[explore]'"]


def test_importing_lyra_never_imports_gradio():
    code = (
        "import sys, lyra_core, lyra_core.cli, lyra_core.explore.explorer; "
        "lyra_core.cli.build_parser(); assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
