"""`lyra transfer`: a conditioned model re-synthesises audio with the input's f0 and loudness
and another timbre, shifted in pitch and loudness on request."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core.cli import main
from lyra_core.training import train
from lyra_plugins.ddsp import yin

from .test_ddsp import TINY
from .test_explore import GAUSSIAN, make_run, plugins, tiny_spec  # noqa: F401

pytestmark = pytest.mark.usefixtures("small_and_eager")

RATE = TINY["data"]["sample_rate"]
STEPS = 40  # enough for the decoder to follow its loudness input


def tone(freq: float, seconds: float = 0.5, amplitude: float = 0.3) -> np.ndarray:
    """A harmonic tone (three partials, falling as 1/k) at `freq` Hz."""
    t = np.arange(round(seconds * RATE)) / RATE
    parts = [np.sin(2 * math.pi * k * freq * t) / k for k in (1, 2, 3)]
    return (amplitude * sum(parts) / 1.8).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory, plugins):  # noqa: F811
    folder = tmp_path_factory.mktemp("transfer")
    spec = json.loads(json.dumps(TINY))
    spec["data"]["dataset"].update(train_examples=8, validation_examples=4)
    spec["training"].update(steps=STEPS, checkpoint_every=STEPS)
    spec["training"]["optimizer"]["lr"] = 0.003
    (folder / "spec.json").write_text(json.dumps(spec))
    train(plugins, str(folder / "spec.json"), run_dir=str(folder / "run"), device="cpu")
    sf.write(folder / "a220.wav", tone(220.0), RATE)
    sf.write(folder / "noise.wav", 0.2 * np.random.default_rng(0).standard_normal(8000), RATE)
    return folder


def transfer(folder, out: str, *extra: str, inputs: tuple[str, ...] = ("a220.wav",)) -> np.ndarray:
    files = [str(folder / name) for name in inputs]
    args = ["transfer", *files, "--run", str(folder / "run"), "--device", "cpu"]
    assert main([*args, "-o", str(folder / out), *extra]) == 0
    audio, rate = sf.read(folder / out / "a220.wav", dtype="float32")
    assert rate == RATE and audio.shape == (round(0.5 * RATE),) and np.isfinite(audio).all()
    return audio


def f0(audio: np.ndarray) -> float:
    """The median YIN f0 of the confidently voiced middle of the audio."""
    x = torch.from_numpy(audio[RATE // 10 : -RATE // 10])[None].double()
    hz, confidence = yin(x, RATE, 64, 50.0, 2000.0, 0.15)
    voiced = hz[confidence > 0.5]
    assert voiced.numel() > 10
    return float(voiced.median())


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio.astype(np.float64)))))


def test_the_output_follows_the_input_f0_and_the_pitch_shift(run):
    assert f0(transfer(run, "plain")) == pytest.approx(220.0, rel=0.03)
    assert f0(transfer(run, "octave", "--pitch-shift", "12")) == pytest.approx(440.0, rel=0.03)


def test_a_loudness_offset_lowers_the_output(run):
    plain, quieter = transfer(run, "plain"), transfer(run, "quieter", "--loudness-offset", "-12")
    assert rms(quieter) < 0.8 * rms(plain)  # trained: quieter in, quieter out


def test_a_timbre_file_changes_the_output(run):
    plain = transfer(run, "plain")
    other = transfer(run, "timbre", "--timbre", str(run / "noise.wav"))
    assert np.abs(other - plain).max() > 1e-3


def test_an_unreadable_file_is_named_and_skipped(run, capsys):
    (run / "broken.wav").write_bytes(b"not audio")
    capsys.readouterr()
    transfer(run, "some", inputs=("broken.wav", "a220.wav"))
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.wav" in captured.err
    assert "wrote 1 file(s)" in captured.out
    assert not (run / "some" / "broken.wav").exists()


def test_a_model_without_controls_is_refused(tmp_path, capsys, plugins):  # noqa: F811
    folder = make_run(tmp_path / "run", tiny_spec(GAUSSIAN, "plain_autoencoder"), plugins)
    sf.write(tmp_path / "a.wav", tone(220.0), RATE)
    args = ["transfer", str(tmp_path / "a.wav"), "--run", str(folder), "--device", "cpu"]
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "plain_autoencoder" in err and "'autoencoder'" in err and "`ddsp`" in err
    assert not (tmp_path / "out").exists()
