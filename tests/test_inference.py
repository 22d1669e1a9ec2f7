"""Using trained models: loading (run dir, checkpoint, MLflow id), chunked encode/decode with
inaudible seams, reconstruct metrics, prior samples, interpolation, and audio file I/O."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.loader import resolved
from lyra_core.services import checkpoint
from lyra_core.services.audio import quantize, read_audio, write_audio
from lyra_core.services.chunking import (
    Chunking,
    decode_latent,
    encode_audio,
    reconstruct_audio,
    slerp,
)
from lyra_core.services.model import load_model
from lyra_core.services.rundir import spec_hash
from lyra_core.training import train

from .helpers import NO_TRACKING, RATE, autoencoder, coder, short_training, synthetic_data

TINY = {
    "name": "tiny_inference",
    "seed": 1,
    "data": synthetic_data(),
    "model": autoencoder({"type": "gaussian", "latent_dim": 4})
    | {"encoder": {**coder("conv_encoder"), "weight_norm": True}},
    "losses": [{"type": "l1"}, {"type": "term", "name": "kl", "weight": 0.01}],
    "training": short_training(2),
    "tracking": NO_TRACKING,
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, plugins) -> Path:
    """A run trained for two steps (once per module)."""
    folder = tmp_path_factory.mktemp("inference")
    spec = folder / "spec.json"
    spec.write_text(json.dumps(TINY))
    train(plugins, str(spec), run_dir=str(folder / "run"), device="cpu")
    return folder / "run"


@pytest.fixture(scope="module")
def loaded(run_dir, plugins):
    return load_model(run_dir, plugins, device="cpu")


def tone(seconds: float, rate: int = RATE, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise, float32 [T]."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 3 * freq * t) + noise
    return x.astype(np.float32)


def cli(*args: str, capsys=None) -> tuple[int, str]:
    code = main([*args])
    out = capsys.readouterr().out if capsys else ""
    return code, out


# -- loading -----------------------------------------------------------------------------------


def test_loads_by_run_dir_and_checkpoint_with_the_trained_weights(run_dir, plugins, loaded):
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    by_file = load_model(run_dir / "checkpoints" / "last.pt", plugins, device="cpu")
    assert loaded.step == by_file.step == 2
    # weight norm is folded: the plain weight equals g·v/‖v‖ from the checkpoint
    g = state["model"]["encoder.input_conv.parametrizations.weight.original0"]
    v = state["model"]["encoder.input_conv.parametrizations.weight.original1"]
    folded = g * v / v.norm(dim=(1, 2), keepdim=True)
    weight = by_file.model.encoder.input_conv.weight
    assert torch.allclose(weight, folded, atol=1e-6)
    assert not any("parametrizations" in n for n, _ in by_file.model.named_parameters())
    spec = json.loads(state["spec"])
    assert loaded.spec_hash == spec_hash(spec) == spec_hash(resolved(loaded.spec, plugins.registry))
    assert (loaded.sample_rate, loaded.channels, loaded.hop_length) == (RATE, 1, 16)
    assert not loaded.model.training


def test_loads_by_mlflow_run_id(run_dir, plugins, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("inference")
    run_id = client.create_run(exp, tags={"lyra.run_dir": str(run_dir.resolve())}).info.run_id
    found = load_model(run_id, plugins, device="cpu", tracking_uri=uri)
    assert found.checkpoint.resolve().parent == (run_dir / "checkpoints").resolve()
    other = client.create_run(exp).info.run_id
    with pytest.raises(LyraError, match=r"no 'lyra\.run_dir' tag"):
        load_model(other, plugins, device="cpu", tracking_uri=uri)
    with pytest.raises(LyraError, match="not found"):
        load_model("0" * 32, plugins, device="cpu", tracking_uri=uri)


def test_a_run_id_is_the_default_trackers_to_resolve(tmp_path):
    """Without the tracker that knows run ids, a run id is just a path that does not exist."""
    plugins = load_plugins(disabled={"trackers"})
    with pytest.raises(LyraError, match="nor a run id of the 'mlflow' tracker"):
        load_model("0" * 32, plugins, device="cpu")
    with pytest.raises(LyraError, match="no such run directory"):
        load_model(str(tmp_path / "missing"), load_plugins(), device="cpu")


def test_a_missing_plugin_is_named_with_its_distribution(run_dir, plugins, tmp_path):
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    spec = json.loads(state["spec"])
    spec["model"]["encoder"]["activation"] = {"type": "wobble"}
    state["spec"] = json.dumps(spec)
    state["plugins"] = {**state["plugins"], "wobbles": "lyra-wobbles 0.3"}
    path = tmp_path / "foreign.pt"
    checkpoint.save_atomic(state, path)
    with pytest.raises(LyraError) as err:
        load_model(path, plugins, device="cpu")
    message = str(err.value)
    assert "unknown activation 'wobble'" in message
    assert "'wobbles' from lyra-wobbles 0.3" in message


def test_bad_sources_are_clear_errors(run_dir, plugins, tmp_path):
    with pytest.raises(LyraError, match="no such run directory"):
        load_model(tmp_path / "nowhere", plugins)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LyraError, match="not a Lyra run"):
        load_model(tmp_path / "empty", plugins)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(LyraError, match="not a readable Lyra checkpoint"):
        load_model(junk, plugins)
    if not torch.cuda.is_available():
        with pytest.raises(LyraError, match="--device cuda: no CUDA device"):
            load_model(run_dir, plugins, device="cuda")


class Payload:
    """Unpickling this would leave a file behind."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/lyra-inference-unpickled"),))


def test_loading_never_unpickles_arbitrary_objects(plugins, tmp_path):
    marker = Path("/tmp/lyra-inference-unpickled")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": {}, "spec": "{}", "x": Payload()}, path)
    with pytest.raises(LyraError, match="not a readable Lyra checkpoint"):
        load_model(path, plugins)
    assert not marker.exists()


def test_a_model_that_is_not_an_audio_model_is_refused(loaded, plugins, tmp_path):
    from tests.conftest import TEST_PARTS

    with_tiny = load_plugins(extra=[("testparts", TEST_PARTS)])
    spec = {**TINY, "model": {"type": "tiny", "activation": {"type": "snake"}}}
    model_state = {"0.weight": torch.zeros(8, 1, 3), "0.bias": torch.zeros(8)}
    model_state["1.alpha"] = torch.ones(1, 8, 1)
    state = {"format": checkpoint.FORMAT, "model": model_state, "spec": json.dumps(spec)}
    checkpoint.save_atomic(state, tmp_path / "tiny.pt")
    with pytest.raises(LyraError, match="not an AudioModel"):
        load_model(tmp_path / "tiny.pt", with_tiny)


# -- chunked processing ------------------------------------------------------------------------


def window_rms(x: torch.Tensor, width: int) -> torch.Tensor:
    """RMS over consecutive windows of `width` samples of a [1, 1, T] signal."""
    usable = x.shape[-1] // width * width
    return x[..., :usable].reshape(-1, width).pow(2).mean(-1).sqrt()


def test_chunk_seams_add_no_click_above_the_models_error(loaded):
    x = torch.from_numpy(tone(2.0))[None, None]
    with torch.no_grad():
        one_pass = loaded.model(x).reconstruction
    # 800-sample chunks, 1200 samples of context: 3/4 of it covers the decoder's ±44 frames
    chunking = Chunking(chunk_seconds=0.1, context_seconds=0.15)
    chunked = reconstruct_audio(loaded, x, chunking)
    hard_cuts = reconstruct_audio(loaded, x, Chunking(0.1, 0.0))
    assert chunked.shape == x.shape
    width = 32
    near = torch.zeros(x.shape[-1] // width, dtype=torch.bool)
    for seam in range(800, x.shape[-1], 800):  # chunk starts: 50 frames · hop 16
        near[(seam - 128) // width : (seam + 128) // width] = True
    own = window_rms(one_pass - x, width)  # the model's own error
    error = window_rms(chunked - x, width)
    # the criterion: near the seams the error is the model's own, nothing added
    assert (error[near] - own[near]).max() <= 1e-3 * own.max()
    # and the stricter one: the seams leave no trace against the one-pass output ...
    seam_diff = window_rms(chunked - one_pass, width)
    assert seam_diff.max() < 1e-4 * window_rms(one_pass, width).max()
    # ... whereas cutting without context does (the measure can fail)
    cut_diff = window_rms(hard_cuts - one_pass, width)
    assert cut_diff[near].max() > 1e3 * seam_diff.max()


def test_encode_and_decode_in_chunks_match_one_pass(loaded):
    x = torch.from_numpy(tone(1.3))[None, None]
    chunking = Chunking(0.1, 0.15)
    z = encode_audio(loaded, x, chunking)
    with torch.no_grad():
        z_full = loaded.model.encode(x)[0]
        y_full = loaded.model.decode(z_full, x.shape[-1])
    assert z.shape == z_full.shape == (1, 4, -(-x.shape[-1] // 16))
    assert torch.allclose(z, z_full, atol=1e-5)
    y = decode_latent(loaded, z_full, x.shape[-1], chunking)
    assert torch.allclose(y, y_full, atol=1e-5)


# -- the commands ------------------------------------------------------------------------------


def test_encode_writes_latents_with_a_sidecar_and_decode_restores_audio(
    run_dir, loaded, tmp_path, capsys
):
    sf.write(tmp_path / "a.wav", tone(0.7), RATE)
    sf.write(tmp_path / "b.flac", np.stack([tone(0.5, 16000), tone(0.5, 16000)], 1), 16000)
    common = ["--run", str(run_dir), "--device", "cpu", "--chunk-seconds", "0.2"]
    code, _ = cli(
        "encode",
        str(tmp_path / "a.wav"),
        str(tmp_path / "b.flac"),
        "-o",
        str(tmp_path / "lat"),
        *common,
        capsys=capsys,
    )
    assert code == 0
    z = np.load(tmp_path / "lat" / "a.npy")
    meta = json.loads((tmp_path / "lat" / "a.json").read_text())
    assert z.shape == (4, -(-5600 // 16)) and z.dtype == np.float32
    assert meta["sample_rate"] == RATE and meta["hop_length"] == 16 and meta["length"] == 5600
    assert meta["model"] == "tiny_inference" and meta["spec_hash"] == loaded.spec_hash
    # a 16 kHz stereo FLAC becomes 8 kHz mono: half the samples
    assert json.loads((tmp_path / "lat" / "b.json").read_text())["length"] == 4000

    out = tmp_path / "dec"
    lat = [str(tmp_path / "lat" / n) for n in ("a.npy", "b.npy")]
    code, _ = cli("decode", *lat, "-o", str(out), "--bits", "float", *common, capsys=capsys)
    assert code == 0
    audio, rate = sf.read(out / "a.wav", dtype="float32")
    assert rate == RATE and audio.shape == (5600,)
    x = torch.from_numpy(tone(0.7))[None, None]
    expected = reconstruct_audio(loaded, x, Chunking(0.2, 0.5))
    assert np.allclose(audio, expected[0, 0].numpy(), atol=1e-5)


def test_reconstruct_prints_distances_per_file_and_their_mean(run_dir, tmp_path, capsys):
    for name, freq in (("low.wav", 110.0), ("high.wav", 440.0)):
        sf.write(tmp_path / name, tone(0.6, freq=freq), RATE)
    code, out = cli(
        "reconstruct",
        str(tmp_path / "low.wav"),
        str(tmp_path / "high.wav"),
        "--run",
        str(run_dir),
        "-o",
        str(tmp_path / "rec"),
        capsys=capsys,
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["file", "mel_distance", "stft_distance", "si_sdr"]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[1:4]}
    low, high, mean = (
        rows[str(tmp_path / "low.wav")],
        rows[str(tmp_path / "high.wav")],
        rows["mean"],
    )
    assert all(np.isfinite(v) for v in low + high)
    assert np.allclose(mean, (np.array(low) + np.array(high)) / 2, atol=1e-3)
    written, rate = sf.read(tmp_path / "rec" / "low.wav")
    assert rate == RATE and len(written) == 4800


def test_sample_is_seeded_and_tempered(run_dir, loaded, tmp_path, capsys):
    def sample(folder: str, seed: int, temperature: float = 1.0) -> list[np.ndarray]:
        args = ["-n", "2", "--seconds", "0.25", "--seed", str(seed), "--bits", "float"]
        code, _ = cli(
            "sample",
            "--run",
            str(run_dir),
            "-o",
            str(tmp_path / folder),
            *args,
            "--temperature",
            str(temperature),
            capsys=capsys,
        )
        assert code == 0
        return [sf.read(p)[0] for p in sorted((tmp_path / folder).glob("*.wav"))]

    first, again, other = sample("a", 1), sample("b", 1), sample("c", 2)
    assert len(first) == 2 and first[0].shape == (2000,)
    assert np.array_equal(first[0], again[0]) and not np.allclose(first[0], first[1])
    assert not np.allclose(first[0], other[0])
    cold = sample("d", 1, temperature=0.0)  # the prior's centre: z = 0
    with torch.no_grad():
        centre = loaded.model.decode(torch.zeros(1, 4, 125), 2000)[0, 0].numpy()
    assert np.allclose(cold[0], centre, atol=1e-5)


def test_interpolate_runs_from_one_file_to_the_other(run_dir, loaded, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", tone(0.5, freq=220.0), RATE)
    sf.write(tmp_path / "b.wav", tone(0.6, freq=330.0, seed=1), RATE)
    code, _ = cli(
        "interpolate",
        str(tmp_path / "a.wav"),
        str(tmp_path / "b.wav"),
        "--steps",
        "3",
        "--run",
        str(run_dir),
        "-o",
        str(tmp_path / "path"),
        "--bits",
        "float",
        capsys=capsys,
    )
    assert code == 0
    files = sorted((tmp_path / "path").glob("a_b_*.wav"))
    assert len(files) == 3
    ends = [sf.read(files[i], dtype="float32")[0] for i in (0, 2)]
    for end, src in zip(ends, ("a.wav", "b.wav"), strict=True):
        x = torch.from_numpy(sf.read(tmp_path / src, dtype="float32")[0])[None, None]
        with torch.no_grad():
            want = loaded.model.decode(loaded.model.encode(x)[0][..., :250], 4000)
        assert end.shape == (4000,) and np.allclose(end, want[0, 0].numpy(), atol=1e-5)


def test_slerp_keeps_the_norm_of_unit_vectors():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T[None]  # [1, D=2, frames=2]
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).T[None]  # second frame: parallel
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=1), torch.ones(1, 2))
    assert torch.allclose(mid[0, :, 0], torch.tensor([0.5**0.5, 0.5**0.5]))
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    assert torch.lerp(a, b, 0.5)[0, :, 0].norm() < 0.75  # linear cuts the corner


# -- audio files -------------------------------------------------------------------------------


def test_read_converts_channels_and_resamples(tmp_path):
    left, right = tone(0.5, 16000, 200.0), tone(0.5, 16000, 300.0)
    sf.write(tmp_path / "s.flac", np.stack([left, right], 1), 16000)
    mono = read_audio(tmp_path / "s.flac", 16000, 1)
    assert mono.shape == (1, 8000) and np.allclose(mono[0], (left + right) / 2, atol=1e-4)
    down = read_audio(tmp_path / "s.flac", 8000, 2)
    assert down.shape == (2, 4000)
    assert np.corrcoef(down[0, 100:-100], left[::2][100:-100])[0, 1] > 0.99
    sf.write(tmp_path / "m.wav", left, 16000)
    assert np.allclose(read_audio(tmp_path / "m.wav", 16000, 2), np.stack([left, left]), atol=1e-4)
    quad = np.stack([left, right, left, right], 1)  # inference downmixes like training does
    sf.write(tmp_path / "q.wav", quad, 16000)
    assert np.allclose(read_audio(tmp_path / "q.wav", 16000, 2), np.stack([left, right]), atol=1e-4)
    with pytest.raises(LyraError, match="cannot map 2 channels to 4"):
        read_audio(tmp_path / "s.flac", 16000, 4)
    (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(LyraError, match="cannot decode"):
        read_audio(tmp_path / "bad.wav", 16000, 1)


def test_tpdf_dither_gives_signal_independent_noise_of_half_an_lsb():
    lsb = 2.0**-15
    quiet = (0.3 * lsb * np.sin(np.arange(200_000) * 0.01))[None]  # below one LSB
    plain = quantize(quiet, 16, dither=False)
    assert not plain.any()  # truncation silences it
    dithered = quantize(quiet, 16, generator=np.random.default_rng(0))
    error = dithered * lsb - quiet
    assert abs(error.mean()) < 0.01 * lsb
    assert 0.47 * lsb < error.std() < 0.53 * lsb  # TPDF + rounding: variance LSB²/4
    assert abs(np.corrcoef(error[0], quiet[0])[0, 1]) < 0.02
    # the sine survives in the dithered signal: correlation with the original
    assert np.corrcoef(dithered[0], quiet[0])[0, 1] > 0.2


def test_write_depths_formats_and_rates(tmp_path):
    x = tone(0.25, 8000)[None]
    path = write_audio(tmp_path / "f.wav", x, 8000, bits="float")
    assert np.array_equal(sf.read(path, dtype="float32")[0], x[0])
    path = write_audio(tmp_path / "p.flac", x, 8000, bits="24", seed=0)
    back, rate = sf.read(path, dtype="float64")
    assert sf.info(str(path)).subtype == "PCM_24" and rate == 8000
    assert np.abs(back - x[0]).max() <= 2.0 * 2.0**-23
    path = write_audio(tmp_path / "d.wav", x, 8000, bits="16", seed=0)
    error = np.abs(sf.read(path)[0] - x[0]).max() * 2**15
    assert 0.5 < error <= 1.5  # dither ±1 LSB plus rounding ±½ LSB
    path = write_audio(tmp_path / "s.wav", x, 8000, bits="16", output_rate=16000)
    back, rate = sf.read(path)
    assert rate == 16000 and back.shape == (4000,) and sf.info(str(path)).subtype == "PCM_16"
    with pytest.raises(LyraError, match="FLAC stores integers"):
        write_audio(tmp_path / "x.flac", x, 8000, bits="float")
    with pytest.raises(LyraError, match="unsupported output extension"):
        write_audio(tmp_path / "x.aiff", x, 8000)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile writes no MP3")
def test_mp3_keeps_rate_channels_length_and_the_tone(run_dir, tmp_path, capsys):
    x = tone(0.5, 16000, freq=440.0)
    stereo = np.stack([x, np.roll(x, 100)])
    path = write_audio(tmp_path / "t.mp3", stereo, 16000)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "MP3",
        "MPEG_LAYER_III",
        16000,
        2,
    )
    back = sf.read(path, dtype="float32", always_2d=True)[0].T
    assert abs(back.shape[1] - x.size) <= 1152  # at most one MPEG frame of encoder padding
    n = min(back.shape[1], x.size)
    snr = 10 * np.log10((stereo[:, :n] ** 2).sum() / ((back[:, :n] - stereo[:, :n]) ** 2).sum())
    assert snr > 10
    resampled = write_audio(tmp_path / "r.mp3", x[None], 16000, output_rate=44100)
    assert sf.info(str(resampled)).samplerate == 44100
    for bits, kwargs, match in [
        ("float", {}, "MP3 has no bit depth"),
        ("24", {}, "MP3 has no bit depth"),
        ("16", {"output_rate": 96000}, "resample with --rate 48000"),
    ]:
        with pytest.raises(LyraError, match=match):
            write_audio(tmp_path / "x.mp3", x[None], 16000, bits=bits, **kwargs)
    with pytest.raises(LyraError, match="one or two channels"):
        write_audio(tmp_path / "x.mp3", np.zeros((3, 100), np.float32), 16000)

    sf.write(tmp_path / "in.wav", tone(0.6), RATE)
    args = ["--run", str(run_dir), "-o", str(tmp_path / "rec"), "--format", "mp3"]
    code, _ = cli("reconstruct", str(tmp_path / "in.wav"), *args, capsys=capsys)
    info = sf.info(str(tmp_path / "rec" / "in.mp3"))
    assert code == 0 and (info.format, info.samplerate, info.channels) == ("MP3", RATE, 1)
    assert abs(info.frames - 4800) <= 1152


def test_cli_reports_user_errors_without_a_traceback(run_dir, tmp_path, capsys):
    code = main(
        ["reconstruct", str(tmp_path / "missing.wav"), "--run", str(run_dir), "-o", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"missing\.wav: no such audio file", err)
    assert "Traceback" not in err
