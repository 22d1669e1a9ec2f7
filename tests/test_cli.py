"""The `lyra` command as a user runs it: real subprocesses, real entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lyra(*args: str, env: dict | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "lyra_core", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_components_lists_kinds_with_origin():
    out = lyra("components")
    assert out.returncode == 0, out.stderr
    assert "activation:" in out.stdout and "optimizer:" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("snake "))
    assert "activations" in line and "lyra-audio" in line


def test_components_of_one_kind_shows_fields():
    out = lyra("components", "optimizer")
    assert out.returncode == 0
    assert "lr = 0.0001  # learning rate" in out.stdout
    assert "betas = [0.9, 0.999]" in out.stdout


def test_unknown_kind_is_a_user_error():
    out = lyra("components", "activations")
    assert out.returncode == 2
    assert "did you mean 'activation'" in out.stderr
    assert "Traceback" not in out.stderr


def test_plugins_lists_distribution():
    out = lyra("plugins")
    assert out.returncode == 0
    assert any(
        x.split()[:3] == ["activations", "loaded", "lyra-audio"] for x in out.stdout.splitlines()
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "not valid JSON"),
        ("42", "a spec must be a JSON object"),
        ('{"model": {"type": "no_such_model"}}', "$.model.type: unknown model 'no_such_model'"),
    ],
)
def test_validate_reports_without_traceback(tmp_path, content, message):
    spec = tmp_path / "bad.json"
    spec.write_text(content)
    out = lyra("validate", str(spec))
    assert out.returncode == 2
    assert message in out.stderr
    assert str(spec) in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_missing_file_and_directory(tmp_path):
    out = lyra("validate", str(tmp_path / "missing.json"), str(tmp_path))
    assert out.returncode == 2
    assert "missing.json: no such spec file" in out.stderr
    assert "is a directory" in out.stderr


def test_traceback_flag():
    out = lyra("--traceback", "components", "activations")
    assert out.returncode == 2
    assert "Traceback" in out.stderr
    assert "UnknownKindError" in out.stderr


def test_schema_to_stdout_and_file(tmp_path):
    out = lyra("schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    assert "snake" in schema["$defs"]["activation"]["properties"]["type"]["enum"]
    written = lyra("schema", "-o", str(tmp_path))
    assert written.returncode == 0
    assert json.loads((tmp_path / "experiment.schema.json").read_text()) == schema


def test_entry_point_script_matches_module():
    script = Path(sys.executable).with_name("lyra")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("lyra ")
