"""Mistaken command lines and files, as a new user makes them: each is one line on stderr and
exit status 2, never a traceback; and what the commands share (latent frames, variational
latents, quiet libraries, the summary's length line)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.services import checkpoint
from lyra_core.services.chunking import Chunking, decode_latent, encode_audio, overlapped
from lyra_core.services.model import load_model
from tests.test_explore import GAUSSIAN, RATE, make_run, tiny_spec, tone

ROOT = Path(__file__).resolve().parents[1]
RVQ_SCALES = {"type": "rvq", "dim": 8, "n_codebooks": 2, "codebook_size": 16, "strides": [1, 2]}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


@pytest.fixture(scope="module")
def files(tmp_path_factory, plugins) -> dict[str, Path]:
    """A run (Gaussian latent, hop 16 at 8 kHz), a WAV, a file and a folder to get wrong."""
    root = tmp_path_factory.mktemp("mistakes")
    run = make_run(root / "run", tiny_spec(GAUSSIAN), plugins)
    wav = root / "tone.wav"
    sf.write(wav, tone(0.25), RATE)
    (root / "a_file").write_text("not a folder")
    return {"root": root, "run": run, "wav": wav, "file": root / "a_file"}


def fails(capsys, *argv: str) -> str:
    """Run `lyra ARGV`; it must exit 2 with one line on stderr and no traceback. -> the line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# -- arguments -----------------------------------------------------------------------------------

RUN_OPTIONS = ("--device", "cpu")
BAD_ARGUMENTS = [
    (["sample", "-n", "-1"], r"argument -n: -1: expected a value in \[1, 10000\]"),
    (["sample", "--seconds", "1e9"], r"argument --seconds: 1e9: expected a value in \(0, 86400\]"),
    (["sample", "--seconds", "nan"], r"argument --seconds: 'nan': give a finite number"),
    (["sample", "--temperature", "inf"], r"--temperature: 'inf': give a finite number"),
    (["sample", "--seed", "1" + "0" * 25], r"argument --seed: 1000"),
    (["sample", "--chunk-seconds", "nan"], r"argument --chunk-seconds: 'nan'"),
    (["sample", "--context-seconds", "-1"], r"argument --context-seconds: -1"),
    (["sample", "--rate", "0"], r"argument --rate: output rate 0 Hz: expected 1,000 to 768,000"),
    (["sample", "--rate", "1000000000"], r"argument --rate: output rate 1000000000 Hz"),
    (["sample", "-n", "two"], r"argument -n: 'two' is not an integer"),
    (["interpolate", "{wav}", "{wav}", "--steps", "1"], r"--steps: 1: expected a value in \[2,"),
    (["explore", "--port", "-1"], r"argument --port: -1: expected a value in \[1, 65535\]"),
    (["explore", "--components", "0"], r"argument --components: 0"),
    (["explore", "--max-seconds", "nan"], r"argument --max-seconds: 'nan'"),
    (["explore", "--examples", "{root}/missing"], r"--examples: .*missing: does not exist"),
    (["encode", "{wav}", "-o", "{file}"], r"-o/--output: .*a_file: is a file, not a folder"),
    (["decode", "{wav}", "-o", "/dev/null/x"], r"/dev/null/x: /dev/null is a file, not a folder"),
    (["reconstruct", "{wav}", "-o", "{file}"], r"a_file: is a file, not a folder"),
    (["export", "-o", "{root}"], r"is a folder; give a file name"),
    (["export", "-o", "{file}/model.ts"], r"a_file/model.ts: .*a_file is a file, not a folder"),
    (["sample", "-o", "/dev/null/x"], r"-o/--output: /dev/null/x: /dev/null is a file"),
    (["interpolate", "{wav}", "{wav}", "-o", "{file}"], r"a_file: is a file, not a folder"),
    (["transfer", "{wav}", "-o", "/dev/null/x"], r"/dev/null/x: /dev/null is a file"),
    (["evaluate", "{wav}", "--json", "/dev/null/x"], r"--json: /dev/null/x: /dev/null is a file"),
    (["evaluate", "{wav}", "--json", "{root}"], r"--json: .*is a folder; give a file name"),
    (["evaluate", "{wav}", "-o", "{file}"], r"-o/--output: .*a_file: is a file, not a folder"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS, ids=lambda a: " ".join(a)[:40])
def test_a_bad_argument_is_one_line_before_the_model_loads(files, capsys, argv, message):
    argv = [a.format(**files) for a in argv]
    options = [*RUN_OPTIONS, "--run", str(files["run"])]
    if "-o" not in argv:
        options += ["-o", str(files["root"] / "out")]
    line = fails(capsys, *argv, *options)
    assert line.startswith(f"error: lyra {argv[0]}: ") and line.endswith("--help`)")
    assert re.search(message, line), line


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "{spec}", "--run-dir", "{file}"],
        ["run", "{spec}", "--run-dir", "/dev/null/x"],
        ["schema", "-o", "/dev/null/x"],
        ["schema", "-o", "{file}/schema.json"],
        ["data", "prepare", "{spec}", "--shards", "/dev/null/x"],
        ["data", "corpus", "/dev/null/x"],
        ["import", "default", "--from", "snac", "-o", "{file}"],
        ["data", "synth", "{file}"],
        ["data", "synth", "{root}/synth", "--minutes", "nan"],
        ["summary", "{spec}", "--seconds", "nan"],
        ["summary", "{spec}", "--depth", "-1"],
    ],
    ids=lambda a: " ".join(a)[:40],
)
def test_other_commands_refuse_bad_paths_and_numbers(files, capsys, argv):
    spec = files["root"] / "spec.json"
    spec.write_text(json.dumps(tiny_spec(GAUSSIAN)))
    fails(capsys, *(a.format(spec=spec, **files) for a in argv))
    assert not (files["root"] / "synth").exists()


# -- files the commands read ---------------------------------------------------------------------


def test_a_checkpoint_whose_spec_is_not_json_is_refused(files, capsys, tmp_path):
    state = checkpoint.load(files["run"] / "checkpoints" / "last.pt")
    for text, message in (("{not json", "is not valid JSON"), ("[1]", "a JSON list, not an")):
        path = tmp_path / "broken.pt"
        checkpoint.save_atomic({**state, "spec": text}, path)
        line = fails(capsys, "encode", files["wav"], "--run", path, "-o", tmp_path / "out")
        assert "broken.pt: the checkpoint's stored spec" in line and message in line


def test_resuming_a_checkpoint_without_optimizer_state_is_refused(files, capsys, tmp_path):
    """Training's part (lyra_core/training reads the optimizer state on resume)."""
    run = make_run(tmp_path / "run", tiny_spec(GAUSSIAN), load_plugins())
    line = fails(capsys, "run", "--resume", run, "--device", "cpu")
    assert "last.pt" in line and "optimizer" in line


@pytest.fixture
def latent_dir(files, tmp_path) -> Path:
    assert main(["encode", str(files["wav"]), "--run", str(files["run"]), "-o", str(tmp_path)]) == 0
    return tmp_path


@pytest.mark.parametrize(
    ("latent", "sidecar", "message"),
    [
        (np.zeros((4, 0), np.float32), None, r"tone.npy: the latent is empty \(shape \[4, 0\]\)"),
        (np.full((4, 10), np.nan, np.float32), None, r"tone.npy: the latent has 40 NaN"),
        (np.zeros((7, 10), np.float32), None, r"a latent of 7 channels; this model's has 4"),
        (None, "{not json", r"tone.json: not a readable JSON sidecar"),
        (None, "[1, 2]", r"tone.json: the sidecar must be a JSON object"),
        (None, '{"length": "2000"}', r"tone.json: 'length' must be a positive whole number"),
        (None, '{"length": 1e30}', r"'length' must be a positive whole number.*got 1e\+30"),
        (None, '{"length": 1000000000000000}', r"'length' 1,000,000,000,000,000: .* memory"),
    ],
    ids=["empty", "nan", "channels", "corrupt-json", "json-list", "str-length", "float", "huge"],
)
def test_decode_refuses_a_bad_latent_or_sidecar(
    files, latent_dir, capsys, latent, sidecar, message
):
    if latent is not None:
        np.save(latent_dir / "tone.npy", latent)
    if sidecar is not None:
        (latent_dir / "tone.json").write_text(sidecar)
    out = latent_dir / "out"
    line = fails(capsys, "decode", latent_dir / "tone.npy", "--run", files["run"], "-o", out)
    assert re.search(message, line), line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", ["missing.npy", "tone.wav", "."], ids=["missing", "wav", "dir"])
def test_decode_names_what_is_wrong_with_an_input(files, capsys, tmp_path, name):
    path = files["wav"] if name == "tone.wav" else tmp_path / name
    line = fails(capsys, "decode", path, "--run", files["run"], "-o", tmp_path / "out")
    assert any(w in line for w in ("no such file", "not a .npy array", "is a folder")), line


def test_a_folder_given_as_audio_is_named_as_one(files, capsys, tmp_path):
    line = fails(capsys, "encode", tmp_path, "--run", files["run"], "-o", tmp_path / "out")
    assert "is a folder; give audio files" in line


def test_a_tracking_store_that_is_not_a_database_is_named(files, capsys, tmp_path):
    store = f"sqlite:///{files['wav']}"
    argv = ["encode", files["wav"], "--run", "0" * 32, "--tracking-uri", store, "-o", tmp_path]
    assert "not a readable MLflow store (file is not a database)" in fails(capsys, *argv)


def test_sample_refuses_sizes_that_cannot_fit_before_allocating(files, tmp_path):
    from lyra_core.inference.files import AudioOutput, sample_files

    loaded = load_model(files["run"], load_plugins(), device="cpu")
    with pytest.raises(LyraError, match=r"more than this machine's .* GB of memory"):
        sample_files(loaded, 1, 1e9, tmp_path, Chunking(), AudioOutput())
    assert not any(tmp_path.iterdir())


def test_an_unknown_reference_argument_is_a_config_error(capsys, tmp_path):
    pytest.importorskip("snac", reason="the reference packages (requirements/reference.txt)")
    argv = ["import", "--from", "snac", "default", "-o", tmp_path / "r", "--config", '{"x": 1}']
    assert "--config: the snac reference does not take these arguments" in fails(capsys, *argv)


# -- chunking ------------------------------------------------------------------------------------


def test_a_last_chunk_shorter_than_the_crossfade_joins_the_one_before():
    x = torch.randn(1, 1, 105)  # chunks of 10 frames, a last one of 5; crossfades of 12 each side
    y = overlapped(lambda s: s * 2, x, 1, 1, 10, 50, torch.device("cpu"))
    torch.testing.assert_close(y, 2 * x)


def test_chunked_decoding_of_any_length_matches_one_pass(files):
    loaded = load_model(files["run"], load_plugins(), device="cpu")
    audio = torch.from_numpy(tone(0.2 + 5 / RATE * 16))[None, None]  # 0.2 s and 5 frames
    z = encode_audio(loaded, audio, Chunking(10.0, 0.5))
    whole = decode_latent(loaded, z, audio.shape[-1], Chunking(10.0, 0.5))
    chunked = decode_latent(loaded, z, audio.shape[-1], Chunking(0.1, 0.1))  # 50 frames each
    assert chunked.shape == whole.shape and torch.isfinite(chunked).all()


# -- one place for latent frames and "variational" ---------------------------------------------


@pytest.fixture(scope="module")
def scales(tmp_path_factory, plugins) -> Path:
    """A run with SNAC's multi-scale RVQ (strides [1, 2]: frames must be even)."""
    return make_run(tmp_path_factory.mktemp("rvq") / "run", tiny_spec(RVQ_SCALES), plugins)


def test_sample_draws_the_frames_a_multi_scale_quantizer_takes(scales, capsys, tmp_path):
    argv = ["sample", "--run", scales, "--seconds", "0.102", "-o", tmp_path, "--device", "cpu"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err  # 816 samples: 51 hops
    audio, rate = sf.read(tmp_path / "sample_000.wav")
    assert rate == RATE and audio.shape == (816,)


def test_latent_frames_honour_the_frame_multiple_in_sample_and_explore(scales, plugins):
    from lyra_core.explore.explorer import Explorer

    loaded = load_model(scales, plugins, device="cpu")
    assert loaded.frame_multiple == 2 and loaded.hop_length == 16
    assert [loaded.latent_frames(n) for n in (1, 16, 17, 32, 816)] == [2, 2, 2, 2, 52]
    drawn = Explorer.open(loaded, components=2).from_prior(0, 1.0, 0.102)
    assert drawn.latent.shape[-1] == loaded.latent_frames(816) and drawn.length == 816


@pytest.mark.parametrize(
    ("bottleneck", "variational"),
    [(GAUSSIAN, True), ({"type": "deterministic", "latent_dim": 4}, False), (RVQ_SCALES, False)],
    ids=["gaussian", "deterministic", "rvq"],
)
def test_a_latent_is_variational_when_the_bottleneck_reports_a_kl(
    plugins, tmp_path, bottleneck, variational
):
    loaded = load_model(make_run(tmp_path / "run", tiny_spec(bottleneck), plugins), plugins, "cpu")
    assert loaded.variational is variational


# -- only Lyra's own lines ---------------------------------------------------------------------

QUIET_DRIVER = """
import sys
from lyra_core.cli import main
code = main(sys.argv[1:])
import torch.utils.cpp_extension  # what torch.compile imports: warns of CUDA_HOME without CUDA
sys.exit(code)
"""


def run_lyra(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    (tmp_path / "cuda").mkdir(exist_ok=True)
    (tmp_path / "mlflow.db").touch()  # an empty store: MLflow creates its tables, and says so
    env = {**os.environ, "CUDA_HOME": str(tmp_path / "cuda"), "PYTHONWARNINGS": "default"}
    env.pop("MLFLOW_LOGGING_LEVEL", None)
    cmd = [sys.executable, "-c", QUIET_DRIVER, *argv]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_commands_print_only_lyras_lines_unless_verbose(tmp_path):
    validate = run_lyra(tmp_path, "validate", str(ROOT / "experiments" / "snake_pqmf.json"))
    assert validate.returncode == 0 and validate.stderr == "", validate.stderr
    run_id = ["--run", "0" * 32, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    quiet = run_lyra(tmp_path, "sample", *run_id, "-o", "out")
    assert quiet.returncode == 2 and quiet.stderr.startswith("error: MLflow run 000"), quiet.stderr
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    (tmp_path / "mlflow.db").unlink()
    loud = run_lyra(tmp_path, "--verbose", "sample", *run_id, "-o", "out")
    assert "INFO mlflow" in loud.stderr
    if not torch.cuda.is_available():
        assert "No CUDA runtime is found" in loud.stderr


def test_python_m_lyra_core_validate_is_quiet():
    spec = ROOT / "experiments" / "snake_pqmf.json"
    cmd = [sys.executable, "-m", "lyra_core", "validate", str(spec)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "snake_pqmf.json: ok" in done.stdout
    for noise in ("No CUDA runtime", "INFO mlflow", "alembic", "Warning"):
        assert noise not in done.stderr


# -- the summary -------------------------------------------------------------------------------


def test_summary_explains_why_decoder_output_and_reconstruction_differ(files, capsys):
    spec = files["root"] / "spec.json"
    spec.write_text(json.dumps(tiny_spec(GAUSSIAN)))
    assert main(["summary", str(spec), "--seconds", "0.1"]) == 0  # 800 samples: 50 hops
    assert "\nlength:" not in capsys.readouterr().out
    assert main(["summary", str(spec), "--seconds", "0.100125"]) == 0  # 801 samples
    out = capsys.readouterr().out
    assert (
        "length: the decoder gives 51 frames x 16 = 816 samples; the reconstruction is that "
        "cropped by 15 samples to the input's 801" in out
    )


def test_resume_with_a_spec_or_run_dir_is_refused(files, capsys, tmp_path):
    """A resume trains its run's own spec in its own folder; naming others would be ignored."""
    run = make_run(tmp_path / "run", tiny_spec(GAUSSIAN), load_plugins())
    spec = run / "spec.json"
    line = fails(capsys, "run", spec, "--resume", run, "--device", "cpu")
    assert "drop SPEC" in line
    line = fails(capsys, "run", "--resume", run, "--run-dir", tmp_path / "x", "--device", "cpu")
    assert "drop --run-dir" in line and not (tmp_path / "x").exists()
