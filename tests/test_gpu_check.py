"""tools/gpu_check.py on the CPU: its dry run end to end, and the overrides it and the CUDA tests
give every shipped experiment (so the GPU run, prepared here, needs no second try)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lyra_core.discovery import load_plugins
from lyra_core.loader import load_spec

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


def test_the_gpu_budget_fits_seven_minutes_on_either_card():
    check = gpu_check()
    assert check.BUDGET_S + 20 <= 7 * 60  # the environment and the report included
    assert all(p.limit <= check.BUDGET_S for p in check.PARTS)
    # On an H200 the parts the check is for fit with the install's minute; a card of slower
    # pace stretches their limits and loses the tail, never the budget.
    first = check.PARTS[: [p.name for p in check.PARTS].index("torchrun") + 1]
    assert sum(p.limit for p in first) + 60 <= check.BUDGET_S
    assert {p.name for p in first} == {"tests", "bench", "snake", "reference", "torchrun"}


@pytest.mark.parametrize(
    ("name", "label"),
    [("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H200", "H200 SXM")],
)
def test_a_known_card_is_found_by_its_device_name(name, label):
    check = gpu_check()
    card = check.card_for(name)
    assert card is not None and card.label == label
    assert 700 < card.bf16_tflops < 989  # measured, under NVIDIA's dense bf16 datasheet figure
    result = {"share_of_peak": 0.25, "card": card.label, "peak_tflops": card.bf16_tflops}
    assert check.share_text(result) == f"25.0% of the {label}'s {card.bf16_tflops:g} bf16"


@pytest.mark.parametrize(
    "name",
    ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 PCIe", "NVIDIA H200 NVL", "NVIDIA GeForce RTX 4090"],
)
def test_an_unknown_card_gets_no_share_of_a_peak(name):
    check = gpu_check()
    assert check.card_for(name) is None
    assert check.share_text({"share_of_peak": None}) == "no measured peak for this device"


def test_only_runs_the_parts_named(tmp_path):
    check = gpu_check()
    cfg = check.Config(False, tmp_path, tmp_path, 10.0, only=("tests", "bench lyracodec_vae"))
    ran = [check.label(p) for p in check.PARTS if check.skip_reason(cfg, p, set()) is None]
    assert ran == ["tests", "bench lyracodec_vae"]
    with pytest.raises(SystemExit) as exc:
        check.main(["--dry-run", "--only", "tests,bnech"])
    assert exc.value.code == 2


def test_without_wheels_the_install_is_skipped_not_failed(tmp_path, monkeypatch):
    check = gpu_check()
    monkeypatch.setattr(check, "WHEELS", tmp_path / "none")
    cfg = check.Config(True, tmp_path / "out", tmp_path, 10.0)
    assert check.install(cfg)["status"] == "skipped"


def test_requirements_of_the_carried_wheels_are_covered(tmp_path, monkeypatch):
    """The wheels in .whl/, or, where none were fetched, those the fetch script downloads now
    from PyPI (seconds)."""
    check = gpu_check()
    if not any(check.WHEELS.glob("*.whl")):
        fetched = subprocess.run(
            ["bash", str(ROOT / "tools" / "fetch_gpu_wheels.sh"), str(tmp_path)],
            env=dict(os.environ, PYTHON=sys.executable),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert fetched.returncode == 0, fetched.stderr[-2000:]
        monkeypatch.setattr(check, "WHEELS", tmp_path)
        monkeypatch.setattr(check, "SDISTS", tmp_path / "sdist")
    wheels = sorted(check.WHEELS.glob("*.whl"))
    assert len(wheels) > 10
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
        timeout=700,
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
    for name in ("snake", "bench lyracodec_vae", "reference", "train", "torchrun"):
        assert parts[name]["status"] == "ok", name
    snac = parts["reference"]["snac_24khz"]  # Lyra's SNAC against the package's (untimed)
    assert snac["encoder_relative_error"] < 1e-5 and snac["decoder_relative_error"] < 1e-5
    bench = parts["bench lyracodec_vae"]
    assert bench["steps_per_s"] > 0 and bench["share_of_peak"] is None  # no GPU, no peak
    kernels = bench["top_kernels"]  # listed when the share is unknown or under 30%
    assert kernels and all(k["ms"] > 0 for k in kernels) and sum(k["share"] for k in kernels) <= 1
    assert report["env"]["card"] is None and report["env"]["device"] == "no CUDA device"
    assert any(k.startswith("val/") for k in parts["train"])
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Lyra GPU check: dry run") and "| torchrun | ok |" in markdown
    assert "## bench lyracodec_vae: top kernels of one step" in markdown
