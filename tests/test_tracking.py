"""MLflow tracking on a real SQLite store, validation metrics and examples, MLflow's UI in Chromium.

- a resumed run directory continues its MLflow run, each step logged once;
- experiments Lyra creates are model training (`mlflow.experimentKind`), and the page Lyra points
  to opens in MLflow's model-training view, not the GenAI one (headless Chromium);
- MLflow's own log lines stay quiet when the application raised their loggers' levels;
- each validation distance is reported once, under the registered loss's name;
- validation examples are seconds long, their spectrograms in seconds and Hz.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
import torch

from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.services.metrics import distance_losses, format_metrics
from lyra_core.training import train
from lyra_core.training.validation import spectrogram_figure, write_examples
from lyra_plugins.trackers import EXPERIMENT_KIND_TAG, MODEL_TRAINING, MLflowTracker
from tests.test_explore_browser import ARGS, CHROMIUM, NO_CHROMIUM, TIMEOUT_MS, free_port
from tests.test_training import write_spec

MLFLOW = Path(sys.executable).with_name("mlflow")


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_resume_continues_the_mlflow_run_each_step_once(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = write_spec(
        tmp_path, tracking={"type": "mlflow", "uri": uri}, training={"validate_every": 3}
    )
    run = tmp_path / "run"
    assert train(load_plugins(), str(spec), run_dir=str(run), device="cpu") == "completed"
    # As if killed at step 6 before its checkpoint: steps 4-6 are in MLflow, the checkpoint is 3's.
    last = run / "checkpoints" / "last.pt"
    last.unlink()
    shutil.copy(run / "checkpoints" / "step-0000003.pt", last)
    resumed = train(load_plugins(), resume=str(run), overrides=["training.steps=8"], device="cpu")
    assert resumed == "completed"

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    [tracked] = client.search_runs([experiment.experiment_id])
    assert tracked.info.status == "FINISHED"
    assert tracked.data.tags["lyra.run_dir"] == str(run.resolve())
    assert steps(client, tracked.info.run_id, "train/loss") == [1, 2, 3, 4, 5, 6, 7, 8]
    assert steps(client, tracked.info.run_id, "val/mel_distance") == [0, 3, 6, 8]
    assert tracked.data.params["training.steps"] == "6"  # MLflow keeps a param's first value
    assert tracked.data.tags["param.training.steps"] == "8"
    assert [r["step"] for r in records(run) if "train/loss" in r] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_experiments_are_tagged_as_model_training(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    untagged = client.create_experiment("made-elsewhere")
    genai = client.create_experiment("agents", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("new", "made-elsewhere", "agents"):
        tracker = MLflowTracker(uri, name, timeout=3)
        tracker.start("tiny", {"lyra.run_dir": str(tmp_path / name)})
        tracker.end("FINISHED")
    kind = {n: client.get_experiment_by_name(n).tags.get(EXPERIMENT_KIND_TAG) for n in ("new",)}
    assert kind == {"new": MODEL_TRAINING}
    assert client.get_experiment(untagged).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(genai).tags[EXPERIMENT_KIND_TAG] == "genai_development"


QUIET_START = """
import logging, sys
if sys.argv[2] == "quiet":
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
from lyra_plugins.trackers import MLflowTracker
MLflowTracker(sys.argv[1], "e", timeout=3).start("tiny", {})
"""


@pytest.mark.parametrize("level", ["quiet", "default"])
def test_mlflow_table_creation_lines_follow_the_logger_levels(tmp_path, level):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = textwrap.dedent(QUIET_START)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}  # lyra's CLI sets it
    out = subprocess.run(
        [sys.executable, "-c", code, uri, level],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert ("Creating initial MLflow database tables" in out.stderr) == (level == "default")
    if level == "quiet":
        assert out.stderr == ""


def test_each_validation_metric_is_reported_once_under_one_name(tmp_path, plugins):
    losses = [{"type": "multi_resolution_stft"}, {"type": "term", "name": "kl", "weight": 0.01}]
    spec = write_spec(tmp_path, losses=losses, training={"steps": 1})
    train(plugins, str(spec), run_dir=str(tmp_path / "run"), device="cpu")
    [first, *_] = [r for r in records(tmp_path / "run") if "val/si_sdr" in r]
    names = {k for k in first if k.startswith("val/")}
    assert names == {
        "val/multi_resolution_stft",  # the training loss
        "val/mel_distance",  # DAC's evaluation distances, as `lyra evaluate` names them
        "val/stft_distance",
        "val/kl",
        "val/si_sdr",
    }

    ctx = BuildContext(registry=plugins.registry, sample_rate=8000, channels=1)
    assert set(distance_losses(plugins.registry, ctx)) == {"mel_distance", "stft_distance"}
    table = format_metrics([("a.wav", {"mel_distance": 1.5, "stft_distance": 2.0, "si_sdr": 3.0})])
    header, row, _ = table.splitlines()
    assert header.split() == ["file", "mel_distance", "stft_distance", "si_sdr"]
    assert row.split() == ["a.wav", "1.5000", "2.0000", "3.0000"]


def test_validation_examples_are_seconds_long(tmp_path, plugins):
    spec = write_spec(
        tmp_path,
        data={"dataset": {"type": "synthetic", "train_examples": 8, "validation_examples": 8}},
        training={"steps": 1, "validation_batches": 4, "validation_examples": 1},
    )
    train(plugins, str(spec), run_dir=str(tmp_path / "run"), device="cpu")
    folder = tmp_path / "run" / "validation" / "step-0000000"
    for label in ("original", "reconstruction"):
        info = sf.info(folder / f"example0_{label}.wav")
        assert info.duration >= 2.0 and info.samplerate == 8000
    assert (folder / "example0_spectrogram.png").stat().st_size > 0


def test_examples_join_consecutive_segments(tmp_path):
    rate, length = 8000, 4096  # 0.512 s segments
    target = torch.rand(8, 1, length) - 0.5
    written = write_examples(tmp_path / "a", target, target.clone(), rate, count=2)
    assert sorted(p.name for p in written if p.suffix == ".wav") == [
        "example0_original.wav",
        "example0_reconstruction.wav",
        "example1_original.wav",
        "example1_reconstruction.wav",
    ]
    audio, _ = sf.read(tmp_path / "a" / "example1_original.wav", dtype="float32")
    assert audio.shape == (4 * length,)  # 2.048 s: segments 4-7, one after another
    assert torch.allclose(torch.from_numpy(audio), target[4:].flatten(), atol=1 / 2**15)
    # Fewer segments than two seconds: all of them, one example.
    write_examples(tmp_path / "b", target[:2], target[:2], rate, count=2)
    assert sf.info(tmp_path / "b" / "example0_original.wav").frames == 2 * length
    assert not (tmp_path / "b" / "example1_original.wav").exists()


def test_spectrogram_axes_are_seconds_and_hz():
    import matplotlib.pyplot as plt

    audio = torch.zeros(1, 16000)
    fig = spectrogram_figure({"original": audio, "reconstruction": audio}, 8000, joins=4000)
    try:
        top, bottom = fig.axes[:2]
        assert [top.get_ylabel(), bottom.get_ylabel()] == ["frequency (Hz)"] * 2
        assert bottom.get_xlabel() == "time (s)"
        assert top.images[0].get_extent() == [0.0, 2.0, 0.0, 4000.0]
        assert len(top.lines) == 3  # the joins at 0.5, 1.0 and 1.5 s
    finally:
        plt.close(fig)


# -- MLflow's UI in a browser ------------------------------------------------------------------


@contextlib.contextmanager
def mlflow_server(store: str) -> Iterator[str]:
    """`mlflow server` on `store` at a free local port, until the block ends."""
    port = free_port()
    command = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", "1", "--backend-store-uri", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while not _answers(f"{base}/health"):
            assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(0.3)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_mlflow_ui_opens_a_lyra_run_in_the_model_training_view(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs it")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(store, "codecs", timeout=3)
    tracker.start("tiny", {"lyra.run_dir": str(tmp_path / "run")})
    tracker.log_metrics({"train/loss": 0.5}, 1)
    tracker.end("FINISHED")
    assert "workflowType=machine_learning" in tracker.describe()
    with mlflow_server(store) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(tracker.page(base))
            page.get_by_text("train/loss").first.wait_for()
            page.get_by_text("Model registry").first.wait_for()  # the model-training sidebar
            page.screenshot(path=str(tmp_path / "mlflow_run.png"))
            text, url = page.locator("body").inner_text(), page.url
        finally:
            browser.close()
    assert "workflowType=machine_learning" in url
    for genai in ("Judges", "Evaluations", "Prompts & versions"):
        assert genai not in text, f"the GenAI view: {genai!r} on the page"
