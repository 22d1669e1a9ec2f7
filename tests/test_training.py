"""`lyra run` end to end on a tiny model: run records, exact resume, signals, NaNs, MLflow, DDP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import attrs
import pytest
import torch

from lyra_core import BuildContext, hookimpl, param
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.services.checkpoint import load, save_atomic
from lyra_core.training import train

from .test_inference import TINY as INFERENCE_TINY

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "train_driver.py"

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {
        "dataset": {"type": "synthetic", "train_examples": 8, "validation_examples": 2},
        "sample_rate": 8000,
        "channels": 1,
        "segment_length": 4096,
        "batch_size": 2,
    },
    "model": {
        "type": "autoencoder",
        "encoder": {"type": "conv_encoder", "base_channels": 4, "c_mults": [2], "strides": [4]},
        "bottleneck": {"type": "gaussian", "latent_dim": 4},
        "decoder": {"type": "conv_decoder", "base_channels": 4, "c_mults": [2], "strides": [4]},
    },
    "losses": [{"type": "l1"}, {"type": "term", "name": "kl", "weight": 0.01}],
    "training": {
        "steps": 6,
        "optimizer": {"type": "adam", "lr": 0.001},
        "validate_every": 1000,
        "checkpoint_every": 3,
        "log_every": 1,
        "validation_batches": 1,
        "validation_examples": 1,
    },
    "tracking": {"type": "none"},
}


def write_spec(folder: Path, **sections) -> Path:
    spec = json.loads(json.dumps(TINY))
    for key, value in sections.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def driver(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DRIVER), *args], capture_output=True, text=True, env=env, timeout=300
    )


def killed_and_resumed(spec: Path, folder: Path, env: dict | None = None) -> tuple[dict, dict]:
    """The last checkpoints of `spec` trained straight through and of the same run SIGKILLed
    after its step-3 checkpoint and resumed (each in its own process)."""
    full, killed = folder / "full", folder / "killed"
    assert driver(str(spec), str(full), env=env).returncode == 0
    out = driver(str(spec), str(killed), "--kill-after-checkpoint", "3", env=env)
    assert out.returncode == -signal.SIGKILL
    assert load(killed / "checkpoints" / "last.pt")["step"] == 3
    resumed = driver(str(spec), str(killed), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    return load(full / "checkpoints" / "last.pt"), load(killed / "checkpoints" / "last.pt")


def params_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return load(run_dir / "checkpoints" / "last.pt")["model"]


def test_run_directory_records_everything(tmp_path):
    spec = write_spec(tmp_path, training={"keep_checkpoints": 1, "validate_every": 3})
    run = tmp_path / "run"
    assert train(load_plugins(), str(spec), run_dir=str(run), device="cpu") == "completed"
    resolved = json.loads((run / "spec.json").read_text())
    assert resolved["model"]["bottleneck"]["logvar_clamp"] == [-10.0, 10.0]  # defaults resolved
    versions = json.loads((run / "versions.json").read_text())
    assert versions["plugins"]["models"].startswith("lyra-audio")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
    val = [r for r in records if "val/si_sdr" in r]
    assert [r["step"] for r in val] == [0, 3, 6] and "val/mel_distance" in val[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
        "step-0000006.pt",
    ]  # keep_checkpoints=1 pruned step 3
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and json.loads(state["spec"]) == resolved
    assert (run / "validation" / "step-0000006" / "example0_reconstruction.wav").stat().st_size
    assert (run / "validation" / "step-0000006" / "example0_spectrogram.png").stat().st_size


def test_resume_after_sigkill_mid_epoch_is_exact_with_an_average_and_a_balancer(tmp_path):
    """8 examples, batch 2: 4 steps per epoch, so the checkpoint at step 3 is mid-epoch; with a
    weight average updated every other step and two balanced losses of very different scales,
    the resumed run ends bit for bit where the straight one does (one thread: a 2-thread
    convolution's backward can differ in the last bit between processes)."""
    losses = [{"type": "l1", "weight": 1000.0}, {"type": "mel", "weight": 0.01}, TINY["losses"][1]]
    training = {"ema": {"decay": 0.9, "start": 1, "every": 2}, "balancer": {"decay": 0.9}}
    spec = write_spec(tmp_path, model=INFERENCE_TINY["model"], losses=losses, training=training)
    a, b = killed_and_resumed(spec, tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert a["step"] == b["step"] == 6
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert any(not torch.equal(a["ema"][k], a["model"][k]) for k in a["model"])
    assert a["balancer"] == b["balancer"] and set(a["balancer"]["total"]) == {"l1", "mel"}


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    spec = write_spec(tmp_path, training={"steps": 100000, "checkpoint_every": 100000})
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lyra_core",
            "run",
            str(spec),
            "--run-dir",
            str(run),
            "--device",
            "cpu",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and "train/loss" in metrics.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"Resume with: lyra run --resume {run}" in err
    assert "Traceback" not in err
    assert load(run / "checkpoints" / "last.pt")["step"] >= 1


@attrs.frozen(kw_only=True)
class NaNAfterSpec:
    """Test-only loss: L1 until `after` calls, then NaN."""

    after: int = param(4)
    weight: float = param(1.0)

    def build(self, ctx: BuildContext):
        calls = [0]

        def loss(output, target):
            calls[0] += 1
            value = (output.reconstruction - target).abs().mean()
            return value * float("nan") if calls[0] > self.after else value

        return types.SimpleNamespace(to=lambda device: loss)


@hookimpl
def lyra_register_components(registry):
    registry.add("loss", "nan_after", NaNAfterSpec)


def test_nonfinite_losses_are_skipped_then_stop_the_run(tmp_path):
    plugins = load_plugins(
        extra=[("nan", types.SimpleNamespace(lyra_register_components=lyra_register_components))]
    )
    spec = write_spec(
        tmp_path,
        losses=[{"type": "nan_after", "after": 4}],
        training={"checkpoint_every": 2, "max_nonfinite": 3},
    )
    run = tmp_path / "run"
    with pytest.raises(LyraError) as info:
        train(plugins, str(spec), run_dir=str(run), device="cpu")
    assert "step 4: the loss or gradients were not finite for 3 steps in a row" in str(info.value)
    state = load(run / "checkpoints" / "last.pt")  # the loss also ran once in validation
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_checkpoints_are_atomic_and_safe(tmp_path):
    path = tmp_path / "c.pt"
    save_atomic({"format": 1, "x": torch.ones(3)}, path)
    with pytest.raises(Exception):  # noqa: B017 - an unpicklable object fails mid-save
        save_atomic({"format": 1, "x": torch.zeros(3), "f": lambda: 0}, path)
    assert torch.equal(load(path)["x"], torch.ones(3))  # the previous file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": 1, "evil": Evil()}, path)
    with pytest.raises(LyraError, match="not a readable Lyra checkpoint"):
        load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(LyraError, match="not a readable Lyra checkpoint"):
        load(path)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    spec = write_spec(tmp_path, training={"steps": 2, "precision": "bf16"})
    assert train(load_plugins(), str(spec), run_dir=str(tmp_path / "r"), device="cpu") == (
        "completed"
    )
    assert all(torch.isfinite(t).all() for t in params_of(tmp_path / "r").values())


def test_mlflow_records_the_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = write_spec(tmp_path, tracking={"type": "mlflow", "uri": uri})
    train(load_plugins(), str(spec), run_dir=str(tmp_path / "run"), device="cpu")
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.bottleneck.type"] == "gaussian"
    assert run.data.params["training.steps"] == "6"
    assert len(run.data.tags["lyra.spec_hash"]) == 16
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "val/mel_distance")} == {
        0,
        6,
    }
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"spec.json", "versions.json", "validation", "checkpoints"} <= artifacts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tracking_server_dying_mid_run_loses_nothing(tmp_path):
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--default-artifact-root",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        spec = write_spec(
            tmp_path, tracking={"type": "mlflow", "uri": f"http://127.0.0.1:{port}", "timeout": 3}
        )
        out = driver(str(spec), str(tmp_path / "run"), "--stop-server-at", "3", str(server.pid))
        assert out.returncode == 0, out.stderr
        assert out.stderr.count("warning: tracking failed") == 1
        records = [
            json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
        assert load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 6
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """The driver in two gloo processes on this machine, one thread each."""
    launcher = Path(sys.executable).with_name("torchrun")
    return subprocess.run(
        [str(launcher), "--standalone", "--nproc_per_node=2", str(DRIVER), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )


def test_ddp_two_cpu_processes_match_one(tmp_path):
    spec = write_spec(tmp_path, training={"steps": 3, "checkpoint_every": 1000})
    two = torchrun(str(spec), str(tmp_path / "ddp"), "--dump-params", str(tmp_path / "ddp_params"))
    assert two.returncode == 0, two.stderr[-3000:]
    one = driver(str(spec), str(tmp_path / "single"), env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr
    rank0 = torch.load(tmp_path / "ddp_params.0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp_params.1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["train/loss"] for x in lines if "train/loss" in x]

    # Same global batch, same data order, same init: the losses agree (up to the
    # reparameterisation noise, which differs per rank).
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=0.05)


def test_ddp_run_stopped_by_sigterm_resumes_exactly(tmp_path):
    """SIGTERM to torchrun (a cluster's pre-emption) reaches both processes: they stop together
    at a step boundary and the main one saves; resumed, the run ends with the weights of a run
    never stopped, each process's noise (the VAE samples per rank) continuing exactly."""
    steps = 20
    spec = write_spec(tmp_path, training={"steps": steps, "checkpoint_every": 1000})
    full = torchrun(str(spec), str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    stopped = torchrun(str(spec), str(tmp_path / "stopped"), "--term-launcher-at", "3")
    assert stopped.returncode != 0  # torchrun itself was stopped by the signal
    assert "SIGTERM: stopping after this step and saving a checkpoint" in stopped.stderr
    assert 3 <= load(tmp_path / "stopped" / "checkpoints" / "last.pt")["step"] < steps
    resumed = torchrun(str(spec), str(tmp_path / "stopped"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full_params, resumed_params = params_of(tmp_path / "full"), params_of(tmp_path / "stopped")
    assert load(tmp_path / "stopped" / "checkpoints" / "last.pt")["step"] == steps
    for key, value in full_params.items():
        assert torch.equal(value, resumed_params[key]), key
