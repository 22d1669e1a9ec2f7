"""`lyra data corpus`: a small real-audio corpus from the Debian packages that are installed."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from lyra_core.cli.corpus import add_parser, corpus_command
from lyra_core.corpus import debian
from lyra_core.corpus.build import build_corpus, prepare_directory
from lyra_core.corpus.items import DOMAINS
from lyra_core.corpus.midi import Note, midi_file
from lyra_core.corpus.sources import ALL_PACKAGES, SOURCES
from lyra_core.corpus.splits import SPLITS, assign_splits
from lyra_core.errors import LyraError
from tests.conftest import SYSTEM_PACKAGES, require_system_packages


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    require_system_packages("sound")
    root = tmp_path_factory.mktemp("corpus")
    manifest = build_corpus(root, minutes_per_source=0.04, seed=3, log=lambda _: None)
    return root, manifest


def test_every_file_is_readable_real_audio(small_corpus: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = small_corpus
    assert manifest["files"]
    for entry in manifest["files"]:
        audio, rate = sf.read(root / entry["path"], dtype="float32", always_2d=True)
        assert rate == 44100 == entry["sample_rate"]
        assert audio.shape[1] == entry["channels"] == 1
        assert abs(len(audio) / rate - entry["duration_s"]) < 0.01
        rms = float(np.sqrt(np.mean(audio**2)))
        assert rms > 1e-3, f"{entry['path']} is (nearly) silent: rms {rms:.2g}"


def test_every_source_and_domain_reaches_every_split(
    small_corpus: tuple[Path, dict[str, Any]],
) -> None:
    _, manifest = small_corpus
    sources = {f["source"].split(":")[0] for f in manifest["files"]}
    assert sources == {s.name for s in SOURCES}
    for split in SPLITS:
        domains = {f["domain"] for f in manifest["files"] if f["split"] == split}
        assert domains == set(DOMAINS), split


def test_splits_are_disjoint_by_source(small_corpus: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = small_corpus
    splits_of: dict[str, set[str]] = defaultdict(set)
    files_of: dict[str, set[str]] = defaultdict(set)
    for f in manifest["files"]:
        splits_of[f["source"]].add(f["split"])
        if not f["tool_package"]:  # a recorded file: its path is the source
            files_of[f["source_file"]].add(f["split"])
        assert Path(f["path"]).parts[0] == f["split"]
    assert all(len(s) == 1 for s in splits_of.values())
    assert all(len(s) == 1 for s in files_of.values())


def test_manifest_lists_every_file_with_package_version_and_licence(
    small_corpus: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = small_corpus
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.wav")}
    assert on_disk == {f["path"] for f in manifest["files"]}
    assert json.loads((root / "manifest.json").read_text())["files"] == manifest["files"]
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [f["path"] for f in manifest["files"]]
    for entry in manifest["files"]:
        assert entry["domain"] in DOMAINS
        assert entry["version"] == debian.package_version(entry["package"])
        assert entry["licence"] and not entry["licence"].startswith("unknown"), entry
        assert Path(entry["copyright"]).is_file()
        assert entry["source_file"].split(" (")[0] and entry["origin"]
    licences = {f["package"]: f["licence"] for f in manifest["files"]}
    assert licences["fluid-soundfont-gm"] == "MIT"


def test_split_is_deterministic_by_seed(small_corpus: tuple[Path, dict[str, Any]]) -> None:
    items = SOURCES[3].items(0, 60.0)  # alsa's recorded files
    a, b = (assign_splits(items, 7, "alsa") for _ in range(2))
    assert {k: [i.key for i in v] for k, v in a.items()} == {
        k: [i.key for i in v] for k, v in b.items()
    }
    held = {assign_splits(items, s, "alsa")["test"][0].key for s in range(8)}
    assert len(held) > 1


def test_missing_packages_are_one_line_and_the_rest_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_system_packages("sound")
    real = debian.package_version
    monkeypatch.setattr(debian, "package_version", lambda p: None if p == "alsa-utils" else real(p))
    lines: list[str] = []
    manifest = build_corpus(
        tmp_path / "c", packages=["alsa", "freedesktop"], minutes_per_source=0.02, log=lines.append
    )
    assert lines[0] == "skipping alsa (not installed): apt-get install -y alsa-utils"
    assert {f["package"] for f in manifest["files"]} == {"sound-theme-freedesktop"}
    monkeypatch.setattr(debian, "package_version", lambda p: None)
    with pytest.raises(LyraError, match="apt-get install -y fluidsynth fluid-soundfont-gm"):
        build_corpus(tmp_path / "d", log=lines.append)


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LyraError, match="unknown source or package 'nope'"):
        build_corpus(tmp_path, packages=["nope"])
    with pytest.raises(LyraError, match="--minutes-per-source must be positive"):
        build_corpus(tmp_path, minutes_per_source=0)
    (tmp_path / "x.txt").write_text("mine")
    with pytest.raises(LyraError, match="not a corpus"):
        prepare_directory(tmp_path)


def test_midi_writer_writes_a_standard_midi_file() -> None:
    notes = [Note(0, 1, 60, 100, 0), Note(1, 0.5, 36, 90, 9)]
    data = midi_file(notes, {0: 24}, 120)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00") and b"\xc0\x18" in data and b"\x99\x24\x5a" in data


def test_licence_from_dep5_paragraph_matching_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: stereo/bell.oga\n stereo/complete.oga\nCopyright: else\nLicense: CC-BY-3.0\n\n"
        "Files: debian/*\nLicense: GPL-3\n"
    )
    monkeypatch.setattr(debian, "_copyright_text", lambda p: text)
    assert (
        debian.licence_of("x", "/usr/share/sounds/freedesktop/stereo/complete.oga") == "CC-BY-3.0"
    )
    assert debian.licence_of("x", "/usr/share/sounds/freedesktop/stereo/other.oga") == "GPL-2+"


def test_add_parser_wires_the_corpus_action() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="data_command"))
    args = parser.parse_args(["corpus", "out", "--packages", "espeak", "alsa-utils"])
    assert args.handler is corpus_command and args.data_command == "corpus"
    assert (args.minutes_per_source, args.sample_rate, args.seed) == (3.0, 44100, 0)
    assert args.packages == ["espeak", "alsa-utils"] and not args.keep_channels


def test_the_system_packages_script_installs_every_corpus_package() -> None:
    script = SYSTEM_PACKAGES.read_text()
    listed = script.split('sound="', 1)[1].split('"', 1)[0].split()
    assert sorted(listed) == sorted(ALL_PACKAGES)


def test_without_the_packages_the_script_says_in_one_line_what_to_add(tmp_path: Path) -> None:
    """On a machine where dpkg knows none of them and there is no apt-get: one line, never a
    failure (exit 1 only for --check)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "grep").symlink_to(shutil.which("grep"))
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "dpkg-query").chmod(0o755)
    env = {"PATH": str(bin_dir)}
    run = [shutil.which("bash"), str(SYSTEM_PACKAGES)]
    done = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
    check = subprocess.run([*run, "--check", "sound"], env=env, capture_output=True, text=True)
    assert (done.returncode, check.returncode) == (0, 1)
    packages = " ".join(ALL_PACKAGES)
    assert done.stdout.splitlines() == [done.stdout.strip()] and not done.stderr
    assert done.stdout.startswith(f"missing system packages: {packages} chromium (")
    assert done.stdout.strip().endswith(f"as root with: apt-get install -y {packages} chromium")
    assert check.stdout.strip() == done.stdout.strip().replace(" chromium", "").replace(
        "the browser tests skip; ", ""
    )
