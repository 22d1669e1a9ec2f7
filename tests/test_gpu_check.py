"""tools/gpu_check.py on the CPU: its dry run end to end, and the overrides it and the CUDA tests
give every shipped experiment (so the GPU run, prepared here, needs no second try)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lyra_core.loader import load_spec
from lyra_core.plugins import load_plugins

from .test_cuda import PRECISIONS, SPECS, amp_overrides

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.py"


def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def test_every_shipped_experiment_takes_the_amp_overrides(registry):
    assert len(SPECS) >= 10
    for path in SPECS:
        for precision in PRECISIONS:
            spec = load_spec(path, registry, amp_overrides(precision))
            assert spec.training.precision == precision
            assert spec.data.batch_size == 2 and spec.training.phases == ()


def test_every_benchmark_takes_its_overrides(registry):
    check = gpu_check()
    benches = [p for p in check.PARTS if p.name == "bench"]
    assert {p.args["spec"] for p in benches} >= {"lyracodec_vae.json", "reference/dac_44khz.json"}
    for part in benches:
        path = check.EXPERIMENTS / part.args["spec"]
        batch = json.loads(path.read_text())["data"]["batch_size"]
        sets = check.bench_overrides(batch, 8, part.args["compile"], False)
        spec = load_spec(path, registry, sets)
        assert spec.training.compile == part.args["compile"] and spec.data.batch_size == batch


def test_the_gpu_budget_fits_the_issue_s_eight_minutes():
    check = gpu_check()
    assert check.BUDGET_S + 30 <= 8 * 60  # the wheels' install and the report included
    assert all(p.limit <= check.BUDGET_S for p in check.PARTS)


def test_without_wheels_the_install_is_skipped_not_failed(tmp_path, monkeypatch):
    check = gpu_check()
    monkeypatch.setattr(check, "WHEELS", tmp_path / "none")
    cfg = check.Config(True, tmp_path / "out", tmp_path, 10.0)
    assert check.install(cfg)["status"] == "skipped"


def test_requirements_of_the_carried_wheels_are_covered():
    check = gpu_check()
    wheels = sorted(check.WHEELS.glob("*.whl"))
    if not wheels:
        pytest.skip("no .whl folder (tools/fetch_gpu_wheels.sh)")
    assert check.uncovered_requirements(wheels) == []
    names = [w.name.split("-")[0].lower() for w in wheels]
    assert len(names) == len(set(names)), "two versions of one package stop the install there"


def test_dry_run_installs_collects_trains_and_writes_the_report(tmp_path):
    """The whole check on the CPU in about a minute; without .whl the install is 'skipped'."""
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    report = json.loads((out / "report.json").read_text())
    parts = report["parts"]
    bad = {n: p for n, p in parts.items() if p["status"] not in ("ok", "skipped")}
    assert not bad and proc.returncode == 0, (bad, proc.stderr[-2000:])
    wheels = any((ROOT / ".whl").glob("*.whl"))
    assert parts["install"]["status"] == ("ok" if wheels else "skipped")
    assert parts["tests"]["status"] == "ok"
    counts = parts["tests"]["counts"]
    assert counts["skipped"] >= 10 and counts["passed"] == counts["failed"] == 0
    assert all("needs a CUDA GPU" in c["message"] for c in parts["tests"]["cases"])
    for name in ("snake", "bench lyracodec_vae", "train", "torchrun"):
        assert parts[name]["status"] == "ok", name
    assert parts["bench lyracodec_vae"]["steps_per_s"] > 0
    assert any(k.startswith("val/") for k in parts["train"])
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Lyra GPU check: dry run") and "| torchrun | ok |" in markdown
