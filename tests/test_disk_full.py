"""A full disk, or a read-only or vanished folder, while Lyra writes: one line that says what,
where, the space free and what to do; exit 2; nothing half-written; nothing a checkpoint held
lost. One test fills a real (tmpfs) filesystem; the others make one write fail with ENOSPC."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lyra_core.cli import main, specs
from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.errors import WriteError
from lyra_core.explore.explorer import load_or_fit_sliders
from lyra_core.loader import load_spec
from lyra_core.services.atomic import append_line, write_text
from lyra_core.services.checkpoint import load
from lyra_core.services.model import load_model, save_model
from lyra_plugins.datasets import AudioFolderSpec

from . import test_training
from .helpers import coder


def write_spec(folder: Path, **sections) -> Path:
    """The training tests' tiny spec, with eager Snake (no compilation)."""
    eager = {"encoder": coder("conv_encoder"), "decoder": coder("conv_decoder")}
    return test_training.write_spec(folder, model=eager, **sections)


class FullFile:
    """A file whose first write stores half its data, then fails as a full disk does."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_at(monkeypatch, name: str, nth: int = 1) -> None:
    """The `nth` file opened for writing whose name holds `name` (its temporary's does) finds
    the disk full."""
    real, seen = pathlib.Path.open, [0]

    def opened(self, mode="r", *args, **kwargs):
        f = real(self, mode, *args, **kwargs)
        if name in self.name and set(mode) & set("wa"):
            seen[0] += 1
            if seen[0] == nth:
                return FullFile(f)
        return f

    monkeypatch.setattr(pathlib.Path, "open", opened)


def lyra_run(capsys, *args: str) -> tuple[int, str]:
    code = main(["run", *args, "--device", "cpu"])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The one `error:` line a failed command printed, after checking there is one and no
    traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def assert_nothing_half_written(run: Path) -> None:
    assert not list(run.rglob(".*.tmp"))
    for line in (run / "metrics.jsonl").read_text().splitlines(keepends=True):
        assert line.endswith("\n") and json.loads(line)["step"] >= 0
    for line in (run / "log.txt").read_text().splitlines(keepends=True):
        assert line.endswith("\n") and re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line)


# Which write fails (the nth opened of that name), what the error names, and the step the last
# good checkpoint holds: a failed checkpoint keeps the one before (every step is checkpointed),
# any other failed write stops the run after a checkpoint of the step it reached (step 2).
PLACES = [
    ("step-0000002.pt", 1, "the checkpoint", 1),
    ("best.pt", 1, "the checkpoint", 1),
    ("metrics.jsonl", 3, "the metrics", 2),
    ("log.txt", 3, "the run's log", 2),
    ("example0_original.wav", 2, "a validation example", 2),
    ("example0_spectrogram.png", 2, "a validation example", 2),
]


@pytest.mark.parametrize(("name", "nth", "what", "saved"), PLACES)
def test_a_failed_write_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, capsys, name, nth, what, saved
):
    training = {"steps": 4, "checkpoint_every": 1, "validate_every": 2, "keep_checkpoints": 9}
    spec, run = write_spec(tmp_path, training=training), tmp_path / "run"
    fill_at(monkeypatch, name, nth)
    code, err = lyra_run(capsys, str(spec), "--run-dir", str(run))
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"error: could not write {what} {run}")
    assert name in line and re.search(r"the disk is full \([\d.]+ \w+ free there\)", line)
    assert line.endswith(
        f"resume from step {saved} ({run / 'checkpoints' / 'last.pt'}) with: "
        f"lyra run --resume {run}"
    )
    assert load(run / "checkpoints" / "last.pt")["step"] == saved
    trained = [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(trained) <= 2  # it stopped at the step whose write failed
    assert_nothing_half_written(run)


def test_a_failed_start_leaves_no_run_directory(tmp_path, capsys):
    """A spec error found while building (a prior's codec that is not there) or a run record
    that cannot be written: the same command, --run-dir included, can run again."""
    missing = tmp_path / "no-codec"
    model = {"type": "latent_prior", "codec": str(missing), "prior": {"type": "wavenet"}}
    spec, run = write_spec(tmp_path), tmp_path / "run"
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "model": model}))
    code, err = lyra_run(capsys, str(spec), "--run-dir", str(run))
    assert code == 2 and str(missing) in error_line(err)
    assert not run.exists()
    given = tmp_path / "given"
    given.mkdir()  # an empty folder the user named is kept, empty
    assert lyra_run(capsys, str(spec), "--run-dir", str(given))[0] == 2
    assert given.is_dir() and not list(given.iterdir())
    spec = write_spec(tmp_path, training={"steps": 1})
    assert lyra_run(capsys, str(spec), "--run-dir", str(run))[0] == 0
    assert load(run / "checkpoints" / "last.pt")["step"] == 1


@pytest.mark.parametrize(
    ("name", "what", "then"),
    [
        ("versions.json", "the run's records", ""),
        ("metrics.jsonl", "the metrics", "start the run again"),
    ],
)
def test_a_write_that_fails_before_the_first_step_leaves_nothing(
    tmp_path, monkeypatch, capsys, name, what, then
):
    """A record at the start, or the metrics of the first validation (the run saves no checkpoint
    of a step it did not train)."""
    spec, run = write_spec(tmp_path), tmp_path / "run"
    fill_at(monkeypatch, name)
    code, err = lyra_run(capsys, str(spec), "--run-dir", str(run))
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"error: could not write {what} {run}")
    assert line.endswith("free some space" + (f", then {then}" if then else ""))
    assert not run.exists()


def test_an_append_is_whole_or_cut_off_again(tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    append_line(log, "first\n")
    fill_at(monkeypatch, "log.txt")
    with pytest.raises(WriteError, match=r"could not write the log .*log.txt: the disk is full"):
        append_line(log, "second, which does not fit\n", "the log")
    assert log.read_text() == "first\n"


def test_read_only_and_vanished_folders(tmp_path, monkeypatch):
    gone = tmp_path / "gone" / "metrics.jsonl"
    message = re.escape(f"the folder {gone.parent} is gone; restore it")
    with pytest.raises(WriteError, match=message):
        append_line(gone, "{}\n")
    real = os.replace

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    target = tmp_path / "spec.json"
    with pytest.raises(WriteError, match="its filesystem is read-only"):
        write_text(target, "{}")
    monkeypatch.setattr(os, "replace", real)
    assert not target.exists() and not list(tmp_path.glob(".*.tmp"))


# In a mount namespace of its own (a user namespace maps the user to root there, so no root is
# needed): a 400 KiB filesystem, the run on it, a resume on the full disk, then the disk grown
# and a resume to the end. A copy of the run directory after each command is kept in $OUT.
FULL_DISK = """
run() {
    step=$1; shift
    "$PY" -m lyra_core run "$@" --device cpu 2> "$OUT/$step.err"; echo $? > "$OUT/$step.rc"
    cp -a "$DISK/run" "$OUT/$step"
}
mount -t tmpfs -o size=400k tmpfs "$DISK" || exit 97
run first "$SPEC" --run-dir "$DISK/run"
run refused --resume "$DISK/run"
mount -o remount,size=4m tmpfs "$DISK" || exit 97
run resumed --resume "$DISK/run"
"""


def on_a_full_disk(tmp_path: Path, spec: Path) -> dict[str, tuple[int, str, Path]]:
    """Exit code, stderr and the run directory after each command of `FULL_DISK`."""
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    env = dict(os.environ, DISK=str(disk), OUT=str(out), SPEC=str(spec), PY=sys.executable)
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", FULL_DISK]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode == 97 or "unshare failed" in done.stderr:
        pytest.skip(f"this kernel lets no user mount a small filesystem: {done.stderr.strip()}")
    steps = ("first", "refused", "resumed")
    return {
        s: (int((out / f"{s}.rc").read_text()), (out / f"{s}.err").read_text(), out / s)
        for s in steps
    }


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux's unshare")
def test_lyra_run_on_a_filesystem_that_fills_up(tmp_path):
    """The run fills a 400 KiB filesystem with checkpoints (each step's kept): it stops at the
    checkpoint that does not fit, a resume on the full disk is refused before it trains and
    changes nothing, and once there is room it resumes to the end."""
    training = {"steps": 4, "checkpoint_every": 1, "keep_checkpoints": 100}
    spec = write_spec(tmp_path, training=training)
    run = tmp_path / "disk" / "run"
    results = on_a_full_disk(tmp_path, spec)

    code, err, first = results["first"]
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"error: could not write the checkpoint {run / 'checkpoints'}")
    assert re.search(r"the disk is full \([\d.]+ KiB free there\); free some space", line)
    saved = load(first / "checkpoints" / "last.pt")["step"]
    assert 0 < saved < 4 and line.endswith(f"with: lyra run --resume {run}")
    assert f"resume from step {saved} " in line
    assert_nothing_half_written(first)

    code, err, refused = results["refused"]
    assert code == 2
    assert "too little space to resume: the next checkpoint needs about" in error_line(err)
    assert files_of(refused) == files_of(first)

    code, err, resumed = results["resumed"]
    assert code == 0, err
    assert load(resumed / "checkpoints" / "last.pt")["step"] == 4
    records = [json.loads(r) for r in (resumed / "metrics.jsonl").read_text().splitlines()]
    trained = [r["step"] for r in records if "train/loss" in r]
    assert trained == [1, 2, 3, 4]  # each step logged once


def files_of(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- the writes of the other commands -----------------------------------------------------------


@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> Path:
    """The tiny spec's model, untrained, saved as a run the inference commands load."""
    folder, plugins = tmp_path_factory.mktemp("model"), load_plugins()
    spec = load_spec(str(write_spec(folder)), plugins.registry)
    model = spec.model.build(spec.context(plugins.registry, "cpu"))
    save_model(model, spec, plugins.registry, folder / "run", plugins.versions())
    return folder / "run"


def tone_file(folder: Path) -> Path:
    path = folder / "tone.wav"
    sf.write(path, 0.3 * np.sin(np.arange(4000) * 0.2), 8000)
    return path


@pytest.mark.parametrize(
    ("command", "name", "what"),
    [
        ("export", "model.ts", "the export"),
        ("encode", "tone.npy", "an encoded file"),
        ("reconstruct", "tone", "the audio"),
    ],
)
def test_command_outputs_on_a_full_disk(
    model_run, tmp_path, monkeypatch, capsys, command, name, what
):
    out = tmp_path / "out"
    args = (
        ["-o", str(out / name)]
        if command == "export"
        else ["-o", str(out), str(tone_file(tmp_path))]
    )
    fill_at(monkeypatch, name)
    assert main([command, "--run", str(model_run), "--device", "cpu", *args]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: could not write {what} {out}")
    assert "the disk is full" in line and line.endswith("free some space")
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing half-written


def test_the_audio_cache_on_a_full_disk(tmp_path, monkeypatch):
    ctx = BuildContext(registry=load_plugins().registry, sample_rate=8000, segment_length=1024)
    spec = AudioFolderSpec(paths=(str(tone_file(tmp_path)),), cache_dir=str(tmp_path / "cache"))
    fill_at(monkeypatch, ".npy")
    with pytest.raises(WriteError, match=r"could not write the audio cache .* disk is full") as e:
        spec.build(ctx, "train")
    assert "or choose another place with the dataset's cache_dir or $LYRA_CACHE_DIR" in str(e.value)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no entry, no data


def test_the_sliders_cache_on_a_full_disk(model_run, tmp_path, monkeypatch):
    loaded = load_model(model_run, load_plugins(), device="cpu")
    fill_at(monkeypatch, "sliders.pt")
    with pytest.raises(WriteError, match=r"could not write the sliders' cache .* disk is full"):
        load_or_fit_sliders(loaded, tmp_path / "sliders.pt", count=2, max_examples=2)
    assert not list(tmp_path.iterdir())


def test_any_command_meeting_a_read_only_filesystem_says_so_in_one_line(
    tmp_path, monkeypatch, capsys
):
    target = tmp_path / "schema.json"

    def read_only(args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(target))

    monkeypatch.setattr(specs, "schema", read_only)
    assert main(["schema"]) == 2
    line = error_line(capsys.readouterr().err)
    assert (
        line == f"error: could not write {target}: its filesystem is read-only; mount it "
        "writable or write elsewhere"
    )
