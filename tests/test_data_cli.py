"""`lyra data synth | stats | prepare`, run through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lyra_core import BuildContext
from lyra_core.cli import main
from lyra_core.loader import load_spec
from lyra_plugins.datasets import SyntheticSpec

REPO = Path(__file__).resolve().parents[1]
SEED_SPEC = REPO / "experiments" / "lyracodec_vae.json"


def write_spec(tmp_path: Path, dataset: dict, **data) -> Path:
    """The seed experiment with its data section replaced."""
    spec = json.loads(SEED_SPEC.read_text())
    spec.pop("$schema", None)
    spec["data"] = {"dataset": dataset, **data}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def synth(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "synth"
    args = ["data", "synth", str(out), "--minutes", "0.02", "--sample-rate", "8000"]
    assert main([*args, "--channels", "1", "--segment-length", "2048", "--seed", "3", *extra]) == 0
    return out


def test_synth_writes_the_synthetic_datasets_audio(tmp_path, capsys, lyra_registry):
    out = synth(tmp_path)
    assert "wrote 1 WAV file(s)" in capsys.readouterr().out
    (wav,) = sorted(out.glob("*.wav"))
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == 8000 and audio.shape == (5 * 2048, 1)  # 1.2 s rounded up to whole examples
    ctx = BuildContext(sample_rate=8000, channels=1, segment_length=2048, seed=3)
    examples = SyntheticSpec().build(ctx, "train")
    expected = np.concatenate([examples[i].numpy() for i in range(5)], axis=1).T
    np.testing.assert_allclose(audio, expected, atol=1.0 / 32768)  # the same audio, in 16 bits


def test_stats_lists_files_hours_segments_and_every_skipped_file(tmp_path, capsys):
    out = synth(tmp_path)
    (out / "broken.wav").write_bytes(b"")
    (out / "sub").mkdir()
    sf.write(out / "sub" / "tiny.flac", np.full((100, 1), 0.5, np.float32), 8000)
    dataset = {"type": "audio_folder", "paths": [str(out)], "cache_dir": str(tmp_path / "c")}
    spec = write_spec(tmp_path, dataset, sample_rate=8000, channels=1, segment_length=2048)
    capsys.readouterr()
    assert main(["data", "stats", str(spec)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "files found: 3 (1 used, 2 skipped)"
    assert lines[1] == "audio: 0.000 h at 8000 Hz, 1 channel(s)"
    train, validation = (int(w) for w in lines[2].replace(",", "").split()[-3::2])
    assert train + validation == 5 and lines[2].startswith("segments of 2048 samples kept:")
    assert lines[3:] == [
        f"skipped {out / 'broken.wav'}: empty file (0 bytes)",
        f"skipped {out / 'sub' / 'tiny.flac'}: shorter than one segment (0.013 s < 0.256 s)",
    ]


def test_the_folder_pipeline_gives_back_the_synthetic_examples(tmp_path, lyra_registry):
    out = synth(tmp_path)
    dataset = {
        "type": "audio_folder",
        "paths": [str(out)],
        "cache_dir": str(tmp_path / "c"),
        "validation_fraction": 0.0,
    }
    spec = load_spec(write_spec(tmp_path, dataset, sample_rate=8000, channels=1), lyra_registry)
    ctx = BuildContext(sample_rate=8000, channels=1, segment_length=2048, seed=3)
    folder = spec.data.dataset.build(ctx, "train")
    synthetic = SyntheticSpec().build(ctx, "train")
    assert folder.segments.tolist() == [[0, i * 2048] for i in range(5)]
    for i in range(5):  # the same examples (re-normalised to the same peak), in 16 bits
        np.testing.assert_allclose(folder[i], synthetic[i], atol=2.0 / 32768)


def test_prepare_decodes_once_then_reuses_the_cache(tmp_path, capsys):
    out = synth(tmp_path)
    dataset = {"type": "audio_folder", "paths": [str(out)], "cache_dir": str(tmp_path / "c")}
    spec = write_spec(tmp_path, dataset, sample_rate=16000, channels=2, segment_length=2048)
    capsys.readouterr()
    assert main(["data", "prepare", str(spec)]) == 0
    first = capsys.readouterr().out
    assert "prepared 1 files into" in first and "1 decoded, 0 from the cache, 0 skipped" in first
    assert "x real time" in first
    assert main(["data", "prepare", str(spec)]) == 0
    assert "0 decoded, 1 from the cache" in capsys.readouterr().out
    cache = tmp_path / "c" / "v1" / "16000hz-2ch"
    assert len(list(cache.glob("*.json"))) == 1  # resampled to 16 kHz stereo, in its own store


def test_synth_takes_the_format_from_a_spec(tmp_path, capsys):
    spec = write_spec(
        tmp_path, {"type": "synthetic", "max_partials": 4}, sample_rate=8000, channels=2
    )
    out = tmp_path / "from_spec"
    args = ["data", "synth", str(out), "--minutes", "0.01", "--spec", str(spec)]
    assert main([*args, "--set", "data.segment_length=4000"]) == 0
    (wav,) = out.glob("*.wav")
    info = sf.info(wav)
    assert (info.samplerate, info.channels, info.frames) == (8000, 2, 4000 * 2)


def test_synthetic_stats_and_prepare(tmp_path, capsys):
    spec = write_spec(tmp_path, {"type": "synthetic", "train_examples": 100}, segment_length=44100)
    assert main(["data", "stats", str(spec)]) == 0
    assert main(["data", "prepare", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "train: 100 examples of 44100 samples (0.028 h at 44100 Hz, 1 channel(s))" in out
    assert "nothing to prepare" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stats", "{spec}"], "error: audio_folder: no such folder or file: {missing}"),
        (["prepare", "{tmp}/nope.json"], "nope.json: no such spec file"),
        (["synth", "{tmp}/o", "--minutes", "0"], "--minutes: 0: expected a value in (0, 1440]"),
        (["synth", "{spec}", "--minutes", "1"], "spec.json: is a file, not a folder"),
        (["synth", "{tmp}/o", "--channels", "0"], "--channels must be positive, got 0"),
    ],
)
def test_mistakes_are_one_clear_error(tmp_path, capsys, args, message):
    missing = tmp_path / "missing"
    spec = write_spec(tmp_path, {"type": "audio_folder", "paths": [str(missing)]})
    fill = {"spec": str(spec), "tmp": str(tmp_path), "missing": str(missing)}
    capsys.readouterr()
    assert main(["data", *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    assert message.format(**fill) in err and "Traceback" not in err
