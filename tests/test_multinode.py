"""Two nodes simulated on this machine: two `torchrun` launchers of two gloo processes each, met
through a c10d rendezvous on 127.0.0.1, each node with its own working directory and audio cache
(`LYRA_CACHE_DIR`), the run directory shared as it would be on a cluster's shared filesystem.

Each process runs this module as its driver (`torchrun ... -m tests.test_multinode`), which
records what the process writes (Python's audit hook on opening files for writing, creating
folders and connecting to SQLite) and the examples it trains on (a recording augmentation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import soundfile as sf
import torch

from lyra_core import BuildContext
from lyra_core.errors import LyraError
from lyra_core.services import checkpoint
from lyra_core.training import train

ROOT = Path(__file__).resolve().parents[1]
RECORD = "LYRA_TEST_RECORD"  # the folder the driver's records go to
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
TIMEOUT = 300  # seconds for one launch of both nodes; a hung collective fails the test
CTX = BuildContext(sample_rate=8000, channels=1, segment_length=4096, seed=0)


# -- the driver (each torchrun process) ----------------------------------------------------------


class RecordExamples(torch.nn.Module):
    """An augmentation that changes nothing and appends each batch's example hashes to a file."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.batches = path, 0

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self.batches += 1
        hashes = [example_hash(e.cpu().numpy().tobytes()) for e in x]
        with open(self.path, "a") as f:  # per batch: a killed process keeps what it trained on
            f.write(json.dumps({"batch": self.batches, "examples": hashes}) + "\n")
        return x


@attrs.frozen
class RecordExamplesSpec:
    def build(self, ctx: Any) -> RecordExamples:
        return RecordExamples(record_file("examples.jsonl"))


def example_hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def record_file(name: str) -> Path:
    """This process's record `name` in the launch's record folder."""
    return Path(os.environ[RECORD]) / f"rank{os.environ['RANK']}-{name}"


def watch_writes(root: Path) -> list[str]:
    """Every path under `root` this process opens for writing, creates as a folder or opens as
    a SQLite database from now on (its data loader's forked workers included)."""
    written: list[str] = []
    prefix = str(root)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = any(c in (mode or "") for c in "wax+") or (flags or 0) & WRITE_FLAGS
        elif event in ("os.mkdir", "sqlite3.connect"):
            path, writes = args[0], True
        else:
            return
        if writes and isinstance(path, str | bytes | os.PathLike):
            text = os.path.abspath(os.fsdecode(path))
            if text.startswith(prefix):
                written.append(os.path.relpath(text, prefix))

    sys.addaudithook(hook)
    return written


def driver_plugins(kill_at: int | None = None) -> Any:
    """Lyra's plugins and the driver's: the recording augmentation, and the node's local rank 0
    SIGKILLing itself after step `kill_at`."""
    import types

    from lyra_core import hookimpl
    from lyra_core.discovery import load_plugins

    @hookimpl
    def lyra_register_components(registry: Any) -> None:
        registry.add("augmentation", "record_examples", RecordExamplesSpec)

    @hookimpl
    def lyra_on_step_end(run: Any, step: int, metrics: dict) -> None:
        if step == kill_at and os.environ["LOCAL_RANK"] == "0":
            os.kill(os.getpid(), signal.SIGKILL)

    hooks = types.SimpleNamespace(
        lyra_register_components=lyra_register_components, lyra_on_step_end=lyra_on_step_end
    )
    return load_plugins(extra=[("multinode", hooks)])


def drive(argv: list[str]) -> int:
    """`lyra run` (or `--resume`) in this process, recording what it writes and trains on."""
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("run_dir")
    p.add_argument("--watch", type=Path, required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kill-at", type=int)
    a = p.parse_args(argv)
    plugins = driver_plugins(a.kill_at)
    root = a.watch.resolve()
    written = watch_writes(root)
    if a.resume:
        train(plugins, None, [], resume=a.run_dir, device="cpu")
    else:
        train(plugins, a.spec, [], device="cpu", run_dir=a.run_dir)
    env = {k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE")}
    about = {**env, "node": Path.cwd().name, "mlflow": "mlflow" in sys.modules}
    ours = os.path.relpath(os.environ[RECORD], root)  # the driver's own records
    written = sorted({p for p in written if not p.startswith(ours)})
    record_file("end.json").write_text(json.dumps({**about, "written": written}))
    return 0


# -- the test -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp: Path, name: str, *args: str, kill_at: int | None = None) -> list[tuple[int, str]]:
    """Both nodes of one launch (node 1 killing itself after step `kill_at`, if given): each
    node's exit status and log; the processes' records in tmp/records/NAME."""
    records = tmp / "records" / name
    records.mkdir(parents=True)
    port = free_port()
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nnodes", "2"]
    torchrun += ["--nproc-per-node", "2", "--rdzv-backend", "c10d", "--max-restarts", "0"]
    # An id of this test process's own: another suite on the machine never joins its rendezvous.
    torchrun += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"{name}-{os.getpid()}"]
    procs = []
    for node in (0, 1):
        work = tmp / f"node{node}"  # this node's working directory and data cache
        work.mkdir(exist_ok=True)
        env = os.environ | {
            "LYRA_CACHE_DIR": str(work / "cache"),
            RECORD: str(records),
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
        }
        kill = ["--kill-at", str(kill_at)] if kill_at is not None and node == 1 else []
        cmd = [*torchrun, "--rdzv-conf", f"is_host={int(node == 0)}"]
        cmd += ["-m", "tests.test_multinode", *args, "--watch", str(tmp), *kill]
        log = open(records / f"node{node}.log", "w")  # noqa: SIM115 (closed below)
        procs.append(
            subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=log, start_new_session=True)
        )
        log.close()  # the launcher has its own copy
    try:
        codes = [proc.wait(timeout=TIMEOUT) for proc in procs]
    finally:  # a hung launch: stop both nodes before failing
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [(code, (records / f"node{n}.log").read_text()) for n, code in enumerate(codes)]


def ends(tmp: Path, name: str) -> dict[int, dict[str, Any]]:
    files = sorted((tmp / "records" / name).glob("rank*-end.json"))
    return {int(r["RANK"]): r for r in (json.loads(f.read_text()) for f in files)}


def trained(tmp: Path, name: str, up_to: int | None = None) -> dict[int, list[str]]:
    """Batch number -> the example hashes of that batch, over the four ranks of a launch."""
    batches: dict[int, list[str]] = {}
    for path in (tmp / "records" / name).glob("rank*-examples.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if up_to is None or entry["batch"] <= up_to:
                batches.setdefault(entry["batch"], []).extend(entry["examples"])
    return batches


def spec(tmp: Path, dataset: dict, tracking: dict, **training: Any) -> Path:
    from .test_shards import TINY

    data = {"sample_rate": CTX.sample_rate, "channels": 1, "segment_length": CTX.segment_length}
    data["batch_size"] = 8
    data |= {"dataset": dataset, "augmentations": [{"type": "record_examples"}]}
    t = TINY["training"] | training
    path = tmp / "spec.json"
    path.write_text(json.dumps(TINY | {"data": data, "training": t, "tracking": tracking}))
    return path


def assert_ran(done: list[tuple[int, str]]) -> None:
    for code, log in done:
        errors = [line for line in log.splitlines() if "rror" in line]
        assert code == 0, "\n".join(errors)[-3000:] or log[-3000:]


def cache_writes(r: dict[str, Any]) -> list[str]:
    """What a process wrote in its own node's data cache."""
    cache = f"{r['node']}/cache"
    return [p for p in r["written"] if p == cache or p.startswith(cache + "/")]


def assert_only_rank_0_writes_the_run(by_rank: dict[int, dict[str, Any]], run: str) -> None:
    """Global rank 0 writes the run directory and the tracking; the other processes write
    nothing, but for local rank 0 its node's cache."""
    written = by_rank[0]["written"]
    assert any(p.startswith(f"{run}/checkpoints/") for p in written)
    assert f"{run}/metrics.jsonl" in written and f"{run}/log.txt" in written
    for rank in (1, 2, 3):
        r = by_rank[rank]
        assert sorted(r["written"]) == sorted(cache_writes(r)), r


def test_two_nodes_share_the_data_write_once_and_resume_together(tmp_path, monkeypatch):
    from lyra_plugins.datasets import SyntheticSpec
    from lyra_plugins.datasets.shards import write_shards

    from .test_shards import by_key

    # Per node: local rank 0 prepares the node's audio cache, its other process reads it.
    wav = tmp_path / "wav"
    wav.mkdir()
    for i in range(6):
        noise = torch.Generator().manual_seed(i)
        sf.write(wav / f"take{i}.wav", 0.3 * torch.randn(24000, generator=noise).numpy(), 8000)
    folder = {"type": "audio_folder", "paths": [str(wav)], "validation_fraction": 0.2}
    path = spec(tmp_path, folder, {"type": "none"}, steps=1)
    assert_ran(launch(tmp_path, "cache", str(path), str(tmp_path / "cache_run")))
    by_rank = ends(tmp_path, "cache")
    assert sorted(by_rank) == [0, 1, 2, 3]
    nodes = {
        n: sorted(int(r["LOCAL_RANK"]) for r in by_rank.values() if r["node"] == n)
        for n in ("node0", "node1")
    }
    assert nodes == {"node0": [0, 1], "node1": [0, 1]}
    for r in by_rank.values():  # each node's local rank 0 decodes into the node's cache
        assert bool(cache_writes(r)) == (r["LOCAL_RANK"] == "0"), r
    assert_only_rank_0_writes_the_run(by_rank, "cache_run")

    # Shards: 24 examples, a global batch of 8 (2 per rank): 3 steps an epoch. Node 1 dies
    # after step 3, past the step-2 checkpoint; both nodes resume from it.
    shards = tmp_path / "shards"
    source = SyntheticSpec(train_examples=24, validation_examples=2)
    write_shards(source, CTX, shards, examples_per_shard=4)
    keys = {example_hash(a.tobytes()): k for k, (a, _) in by_key(shards, "train").items()}
    dataset = {"type": "shards", "urls": [str(shards / "train-{000000..000005}.tar")]}
    mlflow = {"type": "mlflow", "uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    path = spec(tmp_path, dataset, mlflow, steps=6, checkpoint_every=2)
    run = tmp_path / "run"
    killed = launch(tmp_path, "killed", str(path), str(run), kill_at=3)
    assert all(code != 0 for code, _ in killed)
    resumed = launch(tmp_path, "resumed", str(path), str(run), "--resume")
    assert_ran(resumed)

    epochs = trained(tmp_path, "killed", up_to=2) | {
        b + 2: examples for b, examples in trained(tmp_path, "resumed").items()
    }
    assert sorted(epochs) == [1, 2, 3, 4, 5, 6]
    for first in (1, 4):  # each epoch: every example once, over the four ranks
        seen = [keys[h] for b in range(first, first + 3) for h in epochs[b]]
        assert sorted(seen) == list(range(24)), first
    assert epochs[1] + epochs[2] != epochs[4] + epochs[5]  # the shards are shuffled again

    by_rank = ends(tmp_path, "resumed")
    assert [by_rank[r]["mlflow"] for r in range(4)] == [True, False, False, False]
    assert_only_rank_0_writes_the_run(by_rank, "run")
    assert "mlflow.db" in by_rank[0]["written"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/loss" in x] == [1, 2, 3, 4, 5, 6]
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # one MLflow run, continued
        assert db.execute("SELECT status FROM runs").fetchall() == [("FINISHED",)]
        steps = db.execute("SELECT DISTINCT step FROM metrics WHERE key = 'train/loss'")
        assert sorted(s for (s,) in steps) == [1, 2, 3, 4, 5, 6]

    # One process cannot resume what four trained.
    monkeypatch.setenv(RECORD, str(tmp_path))
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(LyraError, match=r"trained by 4 process\(es\) and this resume has 1"):
        train(driver_plugins(), None, [], resume=str(run), device="cpu")
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 6  # left as it was


if __name__ == "__main__":
    sys.exit(drive(sys.argv[1:]))
