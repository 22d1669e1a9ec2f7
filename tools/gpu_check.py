"""Lyra's GPU check: install from carried wheels, `pytest -m cuda`, benchmarks, one report.

    python3 tools/gpu_check.py          # on the GPU machine (`make gpu-check`); report to $OUT
    .venv/bin/python tools/gpu_check.py --dry-run --out /tmp/gpu-check   # here, on the CPU

    python3 tools/gpu_check.py --only tests,torchrun   # a rerun of some parts

Each part runs in its own process under its own time limit (and within one budget for the whole
check: 7 minutes); a part that fails, hangs or runs out of memory is recorded and the next one
runs. The check reads the device's name and, for a card it knows (`CARDS`: the H100 and H200 it
was sized on), gives each benchmark's TFLOP/s as a share of that card's measured bf16 matrix rate
and scales the part limits by the card's pace; an unknown card gets TFLOP/s without a share.
The report (report.json, report.md) is rewritten after every part, so a killed check still
leaves one.
`--dry-run` runs every part on the CPU at tiny sizes (its limits only catch a hang): it installs the
wheels in .whl/ (when fetched: tools/fetch_gpu_wheels.sh) into a temporary target for Python 3.12,
checks that their requirements are covered, collects the CUDA tests (they skip here) and writes
the report.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
SDISTS = WHEELS / "sdist"  # built there: C extensions with no wheel on PyPI
EXPERIMENTS = ROOT / "experiments"
BUDGET_S = 400.0  # the whole check on the GPU: 7 minutes, its start-up and report included
# The dry run takes a minute or two on an idle 2-core CPU; its limits only catch a hang (a CPU
# shared with other work can be ten times slower).
DRY_BUDGET_S = 600.0
DRY_LIMIT_S = 120.0  # each part's
TOP_KERNELS_UNDER = 0.3  # a benchmark's top kernels are listed below this share of the peak


@dataclass(frozen=True)
class Card:
    """A GPU the check knows: its measured bf16 matrix rate (an 8192³ product, random data)."""

    label: str
    pattern: str  # matches torch.cuda.get_device_name()
    bf16_tflops: float
    pace: float  # part limits relative to the H200's (its memory bandwidth over this card's)


# Measured on the GPU machines these checks run on: H100 80GB HBM3, 798 TFLOP/s, 3.0 TB/s
# device-to-device; H200, 769-798 TFLOP/s (790 typical), 4.3 TB/s. Other H100s and H200s (PCIe,
# NVL) have lower clocks and power: unknown here, so no share of a peak is claimed for them.
CARDS = (
    Card("H100 SXM", r"\bH100\b.*\bHBM3\b", 798.0, 1.4),
    Card("H200 SXM", r"\bH200\b(?!.*\bNVL\b)", 790.0, 1.0),
)
UNKNOWN_PACE = 1.4


def card_for(name: str) -> Card | None:
    """The known card that `name` (torch.cuda.get_device_name()) is, or None."""
    return next((c for c in CARDS if re.search(c.pattern, name)), None)


# On the GPU machine already (device notes' KINDS.md); mlflow is absent and not needed: the
# check's specs track with `none`, and Lyra imports mlflow only inside the mlflow tracker.
ON_GPU_MACHINE = {
    "torch", "torchaudio", "numpy", "scipy", "matplotlib", "triton", "einops", "huggingface-hub",
    "pytest", "pytest-benchmark", "packaging", "setuptools", "protobuf", "rich", "tensorboard",
    "tqdm", "pillow",
}  # fmt: skip
# Not carried: mlflow, and descript-audiotools' requirements that `dac.model` never imports.
NOT_CARRIED = {"mlflow", "librosa", "ipython", "pyloudnorm", "torch-stoi", "markdown2", "fire"}
EXTRA = "eval"  # the optional dependencies carried too (`lyra evaluate`'s speech metrics, ViSQOL)
PIP = ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
CROSS = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"] + [
    arg
    for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
    for arg in ("--platform", p)
]


# The dry run's demo model: narrow enough that a CPU step takes milliseconds.
DRY_MODEL = ["model.encoder.base_channels=4", "model.decoder.base_channels=4"]


@dataclass
class Config:
    dry_run: bool
    out: Path
    work: Path
    budget: float
    pace: float = 1.0  # the card's part limits over the H200's
    only: tuple[str, ...] = ()  # the parts to run (all when empty)
    started: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def within(self, seconds: float) -> float:
        """`seconds`, or less where the check's budget has less left (an install step's)."""
        return max(5.0, min(seconds, self.left() - 5))


@dataclass
class Part:
    name: str
    limit: float  # seconds on the GPU
    args: dict[str, Any] = field(default_factory=dict)


# In priority order: later parts get what the budget leaves (on an H200 the parts before the
# training fit, with the install; a slower card's limits grow by its pace and the tail drops).
PARTS = [
    Part("tests", 150),
    Part("bench", 50, {"spec": "lyracodec_vae.json", "compile": False}),
    Part("snake", 20),
    Part("reference", 60),
    Part("torchrun", 35),
    Part("bench", 45, {"spec": "reference/dac_44khz.json", "compile": False}),
    Part("bench", 35, {"spec": "reference/snac_24khz.json", "compile": False}),
    Part("train", 60, {"spec": "snake_pqmf.json", "minutes": 0.5}),
    Part("bench", 90, {"spec": "lyracodec_vae.json", "compile": True}),
    Part("bench", 60, {"spec": "reference/snac_24khz.json", "compile": True}),
    Part("bench", 60, {"spec": "reference/dac_44khz.json", "compile": True}),
]


def label(part: Part) -> str:
    if part.name != "bench":
        return part.name
    stem = Path(part.args["spec"]).stem
    return f"bench {stem}" + (" compiled" if part.args["compile"] else "")


# -- running parts ---------------------------------------------------------------------------


def run_command(
    cmd: list[str], limit: float, env: dict[str, str], cwd: Path = ROOT
) -> tuple[int | None, str]:
    """Run `cmd` in its own process group; (exit status or None on timeout, its output)."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(limit, 1.0))
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out


def run_part(cfg: Config, part: Part, index: int) -> dict[str, Any]:
    """One part in a child process (so a hang or a CUDA error cannot take the check down)."""
    limit = min(DRY_LIMIT_S if cfg.dry_run else part.limit * cfg.pace, cfg.left() - 5)
    if limit < 5:
        return {"status": "skipped", "error": "no time left in the check's budget"}
    result_file = cfg.work / f"part{index}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part.name]
    cmd += ["--args", json.dumps(part.args), "--result", str(result_file), "--work", str(cfg.work)]
    cmd += ["--dry-run"] if cfg.dry_run else []
    started = time.monotonic()
    code, output = run_command(cmd, limit, cfg.env)
    result = _read_result(result_file, code, output, limit)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["limit_s"] = round(limit)
    if part.name == "tests" and "amp" not in result:
        result["amp"] = amp_records(cfg.work)
    return result


def _read_result(path: Path, code: int | None, output: str, limit: float) -> dict[str, Any]:
    tail = output[-3000:]
    if code is None:
        return {"status": "timeout", "error": f"over its {limit:.0f} s limit", "log": tail}
    if path.exists():
        result = json.loads(path.read_text())
        if result["status"] != "ok":
            result["log"] = tail
        return result
    return {"status": "failed", "error": f"exit status {code}, no result", "log": tail}


def child(name: str, args: dict[str, Any], result_file: Path, work: Path, dry_run: bool) -> int:
    """The `--part` entry point: run one part, write its result as JSON."""
    try:
        result = {"status": "ok", **CHILD_PARTS[name](work, dry_run, **args)}
    except Exception as exc:
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result_file.write_text(json.dumps(result, indent=2, default=str))
    return 0


# -- install ---------------------------------------------------------------------------------


def install(cfg: Config) -> dict[str, Any]:
    """Lyra and the carried wheels into a --target folder, beside the machine's own torch."""
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return {"status": "skipped", "error": "no .whl folder (tools/fetch_gpu_wheels.sh)"}
    site = cfg.work / "site"
    # In the dry run the wheels are Python 3.12's (the GPU machine's): pip installs them for
    # 3.12 into their own folder; Lyra goes alone into the folder this interpreter imports.
    wheel_site = cfg.work / "site312" if cfg.dry_run else site
    cross = CROSS if cfg.dry_run else []
    step = [*PIP, "--target", str(wheel_site), *cross, *map(str, wheels)]
    code, output = run_command([sys.executable, *step], cfg.within(120), cfg.env)
    if code != 0:
        return {"status": "failed", "error": f"pip (wheels): {output[-1500:]}"}
    lyra = install_lyra(cfg, site)
    if lyra.startswith("failed"):
        return {"status": "failed", "error": lyra}
    cfg.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), cfg.env.get("PYTHONPATH")]))
    result = {"wheels": [w.name for w in wheels], "target": str(site), "lyra": lyra}
    result["sdists"] = install_sdists(cfg, wheel_site)
    result["uncovered"] = uncovered_requirements(wheels)
    result |= import_check(cfg)
    ok = not result["uncovered"] and result.get("imports") == "ok"
    ok = ok and not result["sdists"].startswith("failed")
    ok = ok and not result.get("failed_plugins") and not result.get("mlflow_imported")
    ok = ok and not result.get("unsatisfied")
    return {"status": "ok" if ok else "failed", **result}


def install_sdists(cfg: Config, site: Path) -> str:
    """The carried source distributions (the eval extra's C extensions, which PyPI has no wheel
    of), built by the GPU machine's compiler; the dry run, for another Python, only names them."""
    sdists = sorted(SDISTS.glob("*.tar.gz"))
    names = ", ".join(s.name for s in sdists) or "none"
    if cfg.dry_run or not sdists:
        return f"to build on the GPU machine: {names}"
    step = [*PIP, "--no-build-isolation", "--target", str(site), *map(str, sdists)]
    code, output = run_command([sys.executable, *step], cfg.within(240), cfg.env)
    return f"built: {names}" if code == 0 else f"failed: pip (sdists): {output[-1500:]}"


def install_lyra(cfg: Config, site: Path) -> str:
    """Lyra built from the checkout into `site`; else the wheel fetched beside the others."""
    build = [*PIP, "--no-build-isolation", "--target", str(site), str(source_copy(cfg.work))]
    code, output = run_command([sys.executable, *build], cfg.within(180), cfg.env)
    if code == 0:
        return "built from the checkout"
    fallback = sorted((WHEELS / "lyra").glob("lyra_audio-*.whl"))
    if not fallback:
        return f"failed: pip (Lyra): {output[-1500:]}"
    code, again = run_command(
        [sys.executable, *PIP, "--target", str(site), str(fallback[-1])], cfg.within(120), cfg.env
    )
    if code != 0:
        return f"failed: pip (Lyra, and its fetched wheel): {output[-800:]} / {again[-700:]}"
    return f"from {fallback[-1].name}: building from the checkout failed: {output[-300:]}"


def source_copy(work: Path) -> Path:
    """What Lyra's wheel is built from, copied: the build leaves no build/ in the checkout (a
    stale one could carry deleted modules into the wheel)."""
    import shutil

    src = work / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for name in ("lyra_core", "plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    return src


def _requirement(text: str) -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip's own copy
        from pip._vendor.packaging.requirements import Requirement
    return Requirement(text)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def wheel_requirements(wheel: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def uncovered_requirements(wheels: list[Path]) -> list[str]:
    """Requirements (of Lyra with its eval extra, and of each wheel, for Python 3.12 on Linux)
    that neither a carried wheel or source distribution nor the GPU machine provides."""
    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
    env |= {"platform_system": "Linux", "implementation_name": "cpython", "extra": ""}
    carried = {_canonical(w.name.split("-")[0]) for w in wheels}
    carried |= {_canonical(s.name.rsplit("-", 1)[0]) for s in SDISTS.glob("*.tar.gz")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lyra = [*project["dependencies"], *project["optional-dependencies"][EXTRA]]
    needed = [*lyra, *(r for w in wheels for r in wheel_requirements(w))]
    missing = set()
    for text in needed:
        req = _requirement(text)
        name = _canonical(req.name)
        if req.marker and not req.marker.evaluate(env):
            continue
        if name not in carried | ON_GPU_MACHINE | NOT_CARRIED:
            missing.add(text)
    return sorted(missing)


IMPORT_CHECK = """
import json, sys
import cattrs, jsonschema, soundfile, torch, torchaudio
import constriction, pesq, pystoi, visqol  # entropy coding; the eval extra
import dac.model, snac  # the reference packages Lyra's generators are compared with
import lyra_core, lyra_core.training, lyra_core.loader, lyra_core.inference.evaluate
from lyra_core.discovery import load_plugins
plugins = load_plugins()
print(json.dumps({
    "lyra_from": lyra_core.__file__, "torch": torch.__version__,
    "torchaudio": torchaudio.__version__, "cuda": torch.version.cuda,
    "libsndfile": soundfile.__libsndfile_version__, "jsonschema": jsonschema.__version__ if
    hasattr(jsonschema, "__version__") else "?", "plugins": len(plugins.infos),
    "components": len(list(plugins.registry.components())),
    "mlflow_imported": "mlflow" in sys.modules,
    "failed_plugins": [str(f) for f in plugins.failures], "unsatisfied": unsatisfied()}))
"""
UNSATISFIED = """
from importlib import metadata
def unsatisfied():
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    bad = []
    for text in metadata.requires("lyra-audio") or []:
        req = Requirement(text)
        if (req.marker and not req.marker.evaluate({"extra": EXTRA})) or req.name == "mlflow":
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            version = None
        if version is None or not req.specifier.contains(version, prereleases=True):
            bad.append(f"{text} (found {version})")
    return bad
"""


def import_check(cfg: Config) -> dict[str, Any]:
    script = f"EXTRA = {EXTRA!r}\n" + UNSATISFIED + IMPORT_CHECK
    code, output = run_command([sys.executable, "-c", script], cfg.within(120), cfg.env, cfg.work)
    if code != 0:
        return {"imports": f"failed: {output[-1500:]}"}
    found = json.loads(output.strip().splitlines()[-1])
    inside = found["lyra_from"].startswith(str(cfg.work))
    return {"imports": "ok" if inside else "lyra imported from outside the target", **found}


# -- tests -----------------------------------------------------------------------------------


def run_tests(work: Path, dry_run: bool) -> dict[str, Any]:
    """`pytest -m cuda tests/test_cuda.py`; with no GPU every test must skip, not fail."""
    junit, records = work / "junit.xml", work / "cuda_records.jsonl"
    records.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs"]
    cmd += ["-p", "no:cacheprovider", f"--junitxml={junit}", f"--basetemp={work / 'pytest'}"]
    cmd += ["--durations=15"]
    env = dict(os.environ, LYRA_CUDA_RECORD=str(records))
    with open(work / "pytest.txt", "w") as log:  # streamed: a killed run still leaves its log
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    output = (work / "pytest.txt").read_text()
    cases = junit_cases(junit) if junit.exists() else []
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    amp = amp_records(work)
    if not cases or counts["failed"] or proc.returncode not in (0, 5):
        failed = [f"{c['name']}: {c['message']}" for c in cases if c["outcome"] == "failed"]
        raise RuntimeError(f"pytest exit {proc.returncode}: {counts}; {failed or output[-1500:]}")
    if dry_run and counts["skipped"] != len(cases):
        raise RuntimeError(f"without a GPU every CUDA test must skip: {counts}")
    return {"counts": counts, "cases": cases, "amp": amp}


def amp_records(work: Path) -> list[dict[str, Any]]:
    """The AMP test's per-experiment losses (LYRA_CUDA_RECORD), as far as it got."""
    records = work / "cuda_records.jsonl"
    lines = records.read_text().splitlines() if records.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def junit_cases(path: Path) -> list[dict[str, str]]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = "skipped" if kind == "skipped" else "failed"
                message = (node.get("message") or "")[:300]
        cases.append({"name": case.get("name", "?"), "outcome": outcome, "message": message})
    return cases


# -- fused Snake -----------------------------------------------------------------------------


def snake_part(work: Path, dry_run: bool) -> dict[str, Any]:
    """Fused (Triton on CUDA) against eager Snake: agreement, time and peak memory."""
    import torch

    from lyra_plugins.activations import snake, snake_fused

    device = "cpu" if dry_run else "cuda"
    shape = (1, 8, 1024) if dry_run else (4, 256, 65536)
    x = torch.randn(*shape, device=device, requires_grad=True)
    alpha = (torch.rand(1, shape[1], 1, device=device) + 0.5).requires_grad_()
    result: dict[str, Any] = {"shape": list(shape)}
    outs = {}
    for name, fn in (("eager", snake), ("fused", snake_fused)):
        y = fn(x, alpha)
        grads = torch.autograd.grad(y.square().sum(), [x, alpha])
        outs[name] = (y.detach(), *grads)
        result[name] = time_snake(fn, x, alpha, device, 2 if dry_run else 20)
    diff = [float((a - b).abs().max()) for a, b in zip(outs["fused"], outs["eager"], strict=True)]
    result["max_abs_diff"] = {"y": diff[0], "grad_x": diff[1], "grad_alpha": diff[2]}
    result["equal_to_1e-5"] = diff[0] <= 1e-5 and diff[1] <= 1e-5
    if not result["equal_to_1e-5"]:
        raise RuntimeError(f"fused Snake differs from eager: {result['max_abs_diff']}")
    return result


def time_snake(fn: Callable, x: Any, alpha: Any, device: str, repeats: int) -> dict[str, float]:
    import torch

    def once() -> None:
        torch.autograd.grad(fn(x, alpha).sum(), [x, alpha])

    once()
    sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if device == "cuda" else 0
    started = time.perf_counter()
    for _ in range(repeats):
        once()
    sync(device)
    ms = (time.perf_counter() - started) / repeats * 1000
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else 0.0
    return {"ms_fwd_bwd": round(ms, 3), "peak_extra_mib": round(peak, 1)}


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# -- training-step benchmarks ----------------------------------------------------------------


def bench_overrides(batch: int, steps: int, compile_: bool, dry_run: bool) -> list[str]:
    dataset = {"type": "synthetic", "train_examples": batch * steps, "validation_examples": 1}
    sets = [
        f"data.dataset={json.dumps(dataset)}",
        f"data.batch_size={batch}",
        f"training.compile={json.dumps(compile_)}",
        f"training.steps={steps}",
        'tracking={"type": "none"}',
    ]
    return sets + (["data.segment_length=2048", "data.num_workers=0"] if dry_run else [])


def bench_part(work: Path, dry_run: bool, spec: str, compile: bool) -> dict[str, Any]:
    """Steps/s, samples/s, peak memory and achieved TFLOP/s of one recipe's training step.

    On CUDA out of memory the batch is halved (and said so). The dry run times the demo's tiny
    model in place of the recipe, after validating the recipe's own overrides."""
    import torch

    path = EXPERIMENTS / spec
    batch = json.loads(path.read_text())["data"]["batch_size"]
    result: dict[str, Any] = {"spec": spec, "compile": compile, "recipe_batch": batch}
    if dry_run:
        validate(path, bench_overrides(batch, 8, compile, False))
        result["dry_run"] = "timed experiments/snake_pqmf.json at batch 1 instead"
        path, batch = EXPERIMENTS / "snake_pqmf.json", 1
    while True:
        try:
            return result | time_steps(work, path, batch, compile, dry_run)
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
        batch //= 2
        result["note"] = f"CUDA out of memory at the recipe's batch: batch {batch}"
        gc.collect()
        torch.cuda.empty_cache()


def validate(path: Path, overrides: list[str]) -> None:
    from lyra_core.discovery import load_plugins
    from lyra_core.loader import load_spec

    load_spec(path, load_plugins().registry, overrides)


def build_trainer(work: Path, path: Path, overrides: list[str], device: str) -> Any:
    from lyra_core.discovery import load_plugins
    from lyra_core.loader import load_spec, resolved
    from lyra_core.services.rundir import RunDir, versions
    from lyra_core.training.engine import Trainer

    plugins = load_plugins()
    spec = load_spec(path, plugins.registry, overrides)
    folder = Path(tempfile.mkdtemp(prefix=f"{path.stem}-", dir=work))
    run = RunDir.create(resolved(spec, plugins.registry), versions(plugins), folder)
    return Trainer(spec, plugins, run, device)


def time_steps(work: Path, path: Path, batch: int, compile_: bool, dry_run: bool) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = "cpu" if dry_run else "cuda"
    warm, timed = (1, 1) if dry_run else ((3, 5) if compile_ else (2, 5))
    trainer = build_trainer(
        work, path, bench_overrides(batch, warm + timed + 1, compile_, dry_run), device
    )
    batches, usable = trainer._batches()  # the trainer's own loader (pinned memory on CUDA)
    params = sum(p.numel() for p in trainer.model.parameters())
    started = time.perf_counter()
    for _ in range(warm):
        trainer.train_step(batches, usable)
    sync(device)
    warm_s = time.perf_counter() - started
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.data_seconds = 0.0
    started = time.perf_counter()
    for _ in range(timed):
        trainer.train_step(batches, usable)
    sync(device)
    seconds = (time.perf_counter() - started) / timed
    data_share = trainer.data_seconds / (seconds * timed)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        trainer.train_step(batches, usable)  # the same math, counted eagerly
    sync(device)
    d, precision = trainer.spec.data, trainer.spec.training.precision
    tflops = counter.get_total_flops() / seconds / 1e12
    card = card_for(torch.cuda.get_device_name()) if device == "cuda" else None
    share = tflops / card.bf16_tflops if card else None
    result = {
        "timed_spec": path.name,
        "batch": batch,
        "segment_length": d.segment_length,
        "channels": d.channels,
        "precision": precision,
        "adversarial": trainer.discriminator is not None,
        "parameters": params,
        "warmup_s": round(warm_s, 2),
        "step_s": round(seconds, 4),
        "steps_per_s": round(1 / seconds, 3),
        "samples_per_s": round(batch * d.segment_length / seconds),
        "examples_per_s": round(batch / seconds, 2),
        "data_share": round(data_share, 4),
        "peak_gib": round(peak, 2),
        "tflop_per_step": counter.get_total_flops() / 1e12,
        "tflops": tflops,
        "card": card.label if card else None,
        "peak_tflops": card.bf16_tflops if card else None,
        "share_of_peak": None if share is None else round(share, 4),
        "top_flops": top_flops(counter),
    }
    if share is None or share < TOP_KERNELS_UNDER:
        result["top_kernels"] = top_kernels(trainer, batches, usable, device)
    return result


def top_kernels(trainer: Any, batches: Any, usable: int, device: str, n: int = 8) -> list[dict]:
    """One more step, profiled: its kernels by GPU time (on the CPU: operators by self time)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        trainer.train_step(batches, usable)
        sync(device)
    kind = DeviceType.CUDA if cuda else DeviceType.CPU
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [
        (e.key, getattr(e, key), e.count) for e in prof.key_averages() if e.device_type == kind
    ]
    total = sum(t for _, t, _ in events) or 1.0
    ranked = sorted(events, key=lambda e: -e[1])[:n]
    return [
        {"name": name[:150], "ms": round(t / 1000, 3), "share": round(t / total, 4), "calls": c}
        for name, t, c in ranked
    ]


def top_flops(counter: Any) -> dict[str, float]:
    totals = counter.get_flop_counts().get("Global", {})
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:5]
    return {str(op): round(n / 1e12, 3) for op, n in ranked}


# -- Lyra's reference generators against the packages ------------------------------------------


REFERENCE_TOLERANCE = 1e-3  # ‖lyra − package‖ / ‖package‖: float32 with TF32 convs on both


def reference_part(work: Path, dry_run: bool) -> dict[str, Any]:
    """Lyra's SNAC and DAC generators and the packages' (`snac`, `dac`), the same random weights
    (benchmarks/bench_reference.py's pairs): encoder and decoder outputs compared, and one
    training step's forward + backward timed for each on 1 s of audio (dry run: SNAC 24 kHz
    alone, on its shortest input, compared but not timed)."""
    names = ["snac_24khz"] if dry_run else ["snac_24khz", "snac_32khz", "dac_44khz"]
    return {name: compare_reference(name, dry_run) for name in names}


def compare_reference(name: str, dry_run: bool) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(ROOT))
    from benchmarks.bench_reference import forward, pair

    device = "cpu" if dry_run else "cuda"
    ref, lyra, unit = pair(name)
    ref, lyra = ref.to(device), lyra.to(device)
    rate = int(name.split("_")[1].removesuffix("khz")) * 1000
    length = unit if dry_run else unit * -(-rate // unit)
    x = torch.randn(1 if dry_run else 4, 1, length, device=device)
    result: dict[str, Any] = {"input": list(x.shape)}
    with torch.no_grad():
        ref.eval(), lyra.eval()
        z = ref.encoder(x)
        for part, given in (("encoder", x), ("decoder", z)):
            outs = []
            for model in (ref, lyra):
                torch.manual_seed(0)  # SNAC's noise blocks draw the same numbers
                outs.append(getattr(model, part)(given).float())
            error = float((outs[1] - outs[0]).norm() / outs[0].norm())
            result[f"{part}_relative_error"] = error
            if not error <= REFERENCE_TOLERANCE:
                raise RuntimeError(
                    f"{name} {part}: Lyra's differs from the package's by {error:.2e}"
                )
    if dry_run:  # a CPU step of these models takes seconds: timed on the GPU only
        return result
    for label_, model in (("package", ref.train()), ("lyra", lyra.train())):
        result[f"{label_}_ms"] = time_fwd_bwd(model, forward, x, device)
    result["lyra_speedup"] = round(result["package_ms"] / result["lyra_ms"], 3)
    return result


def time_fwd_bwd(model: Any, forward: Callable, x: Any, device: str) -> float:
    """Median milliseconds of one forward + backward (mean |y| as the loss), after two warm-up
    steps that compile Lyra's fused Snake."""
    import statistics

    def step() -> None:
        model.zero_grad(set_to_none=True)
        forward(model, x).abs().mean().backward()

    for _ in range(2):
        step()
    times = []
    for _ in range(5):
        sync(device)
        started = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


# -- a short training, torchrun ----------------------------------------------------------------


def train_part(work: Path, dry_run: bool, spec: str, minutes: float) -> dict[str, Any]:
    """The demo for `minutes` on the device, through `train` (loader, validation, checkpoint)."""
    from lyra_core.discovery import load_plugins
    from lyra_core.training import train

    run = Path(tempfile.mkdtemp(prefix="train-", dir=work)) / "run"
    sets = ['tracking={"type": "none"}', "training.validation_examples=1"]
    if dry_run:
        minutes = 0.05
        sets += [
            "data.segment_length=2048",
            "data.batch_size=2",
            'data.dataset={"type": "synthetic", "train_examples": 8, "validation_examples": 2}',
            "training.validation_batches=1",
            *DRY_MODEL,
        ]
    sets += [f"training.max_minutes={minutes}", "training.steps=1000000"]
    sets += ["training.validate_every=1000000"]  # validation at the start and the end
    device = "cpu" if dry_run else "cuda"
    reason = train(load_plugins(), str(EXPERIMENTS / spec), sets, device=device, run_dir=str(run))
    return {"spec": spec, "minutes": minutes, "reason": reason, **last_metrics(run)}


def last_metrics(run: Path) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        latest |= {k: v for k, v in json.loads(line).items() if isinstance(v, int | float)}
    keep = ("step", "train/loss", "perf/", "val/")
    return {k: v for k, v in latest.items() if k.startswith(keep)}


NCCL_PROBE = """
import os, torch, torch.distributed as dist
cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
model = torch.nn.parallel.DistributedDataParallel(
    torch.nn.Conv1d(1, 4, 3).to(device), device_ids=[device] if cuda else None)
model(torch.randn(2, 1, 64, device=device)).square().mean().backward()
t = torch.ones(4, device=device); dist.all_reduce(t)
print("backend", dist.get_backend(), "all_reduce", t.tolist())
dist.destroy_process_group()
"""


def torchrun_part(work: Path, dry_run: bool) -> dict[str, Any]:
    """`torchrun --nproc_per_node=1 -m lyra_core run` end to end, and NCCL with DDP in one rank."""
    run = Path(tempfile.mkdtemp(prefix="torchrun-", dir=work))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    sets = [
        'tracking={"type": "none"}',
        f"training.steps={2 if dry_run else 4}",
        "training.checkpoint_every=1",
        "data.segment_length=2048",
        'data.dataset={"type": "synthetic", "train_examples": 16, "validation_examples": 2}',
        "training.validation_batches=1",
        *(DRY_MODEL if dry_run else []),
    ]
    cmd = [*torchrun, "-m", "lyra_core", "run", str(EXPERIMENTS / "snake_pqmf.json")]
    cmd += [arg for s in sets for arg in ("--set", s)]
    cmd += ["--device", "cpu" if dry_run else "cuda", "--run-dir", str(run / "run")]
    lyra = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    if lyra.returncode != 0:
        raise RuntimeError(f"torchrun lyra run: exit {lyra.returncode}: {errors_in(lyra.stderr)}")
    done = [line for line in lyra.stdout.splitlines() if line.startswith("done:")]
    result = {"lyra_run": done[-1] if done else "?", "probe": "skipped in the dry run"}
    if dry_run:
        return result
    probe_file = run / "nccl_probe.py"
    probe_file.write_text(NCCL_PROBE)
    probe = subprocess.run([*torchrun, str(probe_file)], capture_output=True, text=True, cwd=work)
    if probe.returncode != 0:
        raise RuntimeError(f"NCCL probe: exit {probe.returncode}: {errors_in(probe.stderr)}")
    return result | {"probe": probe.stdout.strip()[-300:]}


def errors_in(text: str) -> str:
    """The lines of a log that name an error (a worker's, not only the launcher's), or its end."""
    lines = [ln.strip() for ln in text.splitlines() if "Error" in ln or "error:" in ln]
    return " / ".join(dict.fromkeys(lines))[-1500:] or text[-1500:]


CHILD_PARTS: dict[str, Callable[..., dict[str, Any]]] = {
    "tests": run_tests,
    "snake": snake_part,
    "bench": bench_part,
    "train": train_part,
    "torchrun": torchrun_part,
    "reference": reference_part,
}


# -- the report ------------------------------------------------------------------------------


DEVICE_NAME = "import torch; print(torch.cuda.is_available() and torch.cuda.get_device_name())"


def environment(cfg: Config) -> dict[str, Any]:
    """Python, the GPUs nvidia-smi lists, and the device's name (in a child process: the check
    itself holds no CUDA context) with the known card it is, if any."""
    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    code, out = run_command(["nvidia-smi", "-L"], 20, cfg.env) if _has("nvidia-smi") else (1, "")
    info["nvidia_smi"] = out.strip()[:300] if code == 0 else "not available"
    code, out = run_command([sys.executable, "-c", DEVICE_NAME], 60, cfg.env)
    name = out.strip().splitlines()[-1] if code == 0 and out.strip() else "False"
    info["device"] = "no CUDA device" if name == "False" else name
    card = card_for(info["device"])
    info["card"] = card.label if card else None
    info["bf16_tflops"] = card.bf16_tflops if card else None
    info["pace"] = card.pace if card else 1.0 if name == "False" else UNKNOWN_PACE
    return info


def _has(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


def write_report(cfg: Config, report: dict[str, Any]) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (cfg.out / "report.md").write_text(markdown(report))
    for name in ("pytest.txt",):
        if (cfg.work / name).exists():
            (cfg.out / name).write_text((cfg.work / name).read_text()[-200_000:])


def markdown(report: dict[str, Any]) -> str:
    mode = "dry run (CPU, tiny sizes)" if report["dry_run"] else "GPU"
    lines = [f"# Lyra GPU check: {mode}", "", f"- environment: `{json.dumps(report['env'])}`"]
    lines += [card_line(report["env"])]
    lines += [f"- total: {report.get('seconds', '?')} s of a {report['budget_s']:.0f} s budget", ""]
    lines += ["| part | status | seconds | headline |", "|---|---|---|---|"]
    for name, r in report["parts"].items():
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {headline(r)} |")
    lines += amp_table(report["parts"].get("tests", {}))
    lines += kernels_table(report["parts"])
    errors = [(n, r) for n, r in report["parts"].items() if r.get("error")]
    lines += ["", "## Errors"] if errors else []
    lines += [f"- **{n}** ({r['status']}): {r['error'][:600]}" for n, r in errors]
    return "\n".join(lines) + "\n"


def headline(r: dict[str, Any]) -> str:
    if "tflops" in r:
        return (
            f"{r['steps_per_s']} steps/s, {r['samples_per_s']:,} samples/s, batch {r['batch']}, "
            f"{r['precision']}, peak {r['peak_gib']} GiB, {r['tflops']:.3g} TFLOP/s "
            f"({share_text(r)}), data {100 * r['data_share']:.1f}%"
        )
    if "counts" in r:
        return ", ".join(f"{k} {v}" for k, v in r["counts"].items())
    if "max_abs_diff" in r:
        e, f = r["eager"], r["fused"]
        return (
            f"max diff {r['max_abs_diff']['y']:.2e}; eager {e['ms_fwd_bwd']} ms "
            f"{e['peak_extra_mib']} MiB, fused {f['ms_fwd_bwd']} ms {f['peak_extra_mib']} MiB"
        )
    if "reason" in r:
        vals = ", ".join(f"{k} {v:.4g}" for k, v in r.items() if k.startswith(("val/", "step")))
        return f"{r['reason']}: {vals}"
    if "probe" in r:
        return f"{r['lyra_run']}; {r['probe']}"
    pairs = {k: v for k, v in r.items() if isinstance(v, dict) and "decoder_relative_error" in v}
    if pairs:
        return "; ".join(
            f"{k}: error {max(v['encoder_relative_error'], v['decoder_relative_error']):.1e}"
            + (f", Lyra {v['lyra_ms']} ms, package {v['package_ms']} ms" if "lyra_ms" in v else "")
            for k, v in pairs.items()
        )
    if "wheels" in r:
        return f"{len(r['wheels'])} wheels; imports {r.get('imports')}; torch {r.get('torch')}"
    text = r.get("error") or r.get("note") or ""
    return text[:120].replace("|", "/").replace("\n", " ")


def share_text(r: dict[str, Any]) -> str:
    if r["share_of_peak"] is None:
        return "no measured peak for this device"
    return f"{100 * r['share_of_peak']:.1f}% of the {r['card']}'s {r['peak_tflops']:g} bf16"


def card_line(env: dict[str, Any]) -> str:
    if env["card"] is None:
        return f"- device: {env['device']} (not a card with a measured peak: no shares of one)"
    return (
        f"- device: {env['device']}, the {env['card']}: {env['bf16_tflops']:g} TFLOP/s measured "
        f"on a bf16 matrix product; part limits × {env['pace']:g}"
    )


def kernels_table(parts: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in parts.items():
        if r.get("top_kernels"):
            lines += ["", f"## {name}: top kernels of one step", "", "| kernel | ms | share |"]
            lines.append("|---|---|---|")
            for k in r["top_kernels"]:
                cell = k["name"].replace("|", "/")
                lines.append(f"| `{cell}` | {k['ms']} | {100 * k['share']:.1f}% |")
    return lines


def amp_table(tests: dict[str, Any]) -> list[str]:
    rows = tests.get("amp") or []
    if not rows:
        return []
    lines = ["", "## AMP: step-0 loss per precision", "", "| spec | 32 | bf16 | fp16 |"]
    lines.append("|---|---|---|---|")
    for row in rows:
        cells = [f"{row['losses'].get(p, {}).get('loss', float('nan')):.5g}" for p in PRECISION]
        lines.append(f"| {row['spec']} | " + " | ".join(cells) + " |")
    return lines


PRECISION = ("32", "bf16", "fp16")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="on the CPU, tiny sizes, short limits")
    p.add_argument("--out", type=Path, help="report folder (default: $OUT, else ./gpu-check)")
    p.add_argument("--budget", type=float, help="seconds for the whole check")
    p.add_argument(
        "--only",
        type=lambda text: tuple(n.strip() for n in text.split(",")),
        default=(),
        help="run only these parts, e.g. 'tests,torchrun' or 'bench lyracodec_vae' (a rerun)",
    )
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--args", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.part:
        return child(a.part, json.loads(a.args), a.result, a.work, a.dry_run)
    known = {n for part in PARTS for n in (part.name, label(part))}
    if set(a.only) - known:
        p.error(f"--only: unknown part(s) {sorted(set(a.only) - known)}; known: {sorted(known)}")
    out = a.out or Path(os.environ.get("OUT") or "gpu-check")
    work = Path(tempfile.mkdtemp(prefix="lyra-gpu-check-"))
    budget = a.budget or (DRY_BUDGET_S if a.dry_run else BUDGET_S)
    return check(Config(a.dry_run, out.resolve(), work, budget, only=a.only))


def check(cfg: Config) -> int:
    report: dict[str, Any] = {"dry_run": cfg.dry_run, "budget_s": cfg.budget, "parts": {}}
    report["env"] = environment(cfg)
    cfg.pace = report["env"]["pace"]
    started = time.monotonic()
    report["parts"]["install"] = timed(lambda: install(cfg))
    write_report(cfg, report)
    if cfg.dry_run:  # no compiling on the CPU: the dry run checks wiring, not kernels
        cfg.env["TORCHDYNAMO_DISABLE"] = "1"
    seen: set[str] = set()
    for index, part in enumerate(PARTS):
        name = label(part)
        print(f"[gpu-check] {name} ...", file=sys.stderr, flush=True)
        reason = skip_reason(cfg, part, seen)
        if reason:
            report["parts"][name] = {"status": "skipped", "note": reason}
            continue
        seen.add(part.name)
        report["parts"][name] = run_part(cfg, part, index)
        print(f"[gpu-check] {name}: {report['parts'][name]['status']}", file=sys.stderr)
        report["seconds"] = round(time.monotonic() - started, 1)
        write_report(cfg, report)
    print((cfg.out / "report.md").read_text())
    bad = [n for n, r in report["parts"].items() if r["status"] in ("failed", "timeout")]
    return 1 if bad else 0


def skip_reason(cfg: Config, part: Part, seen: set[str]) -> str | None:
    if cfg.only and not {part.name, label(part)} & set(cfg.only):
        return "not in --only"
    if cfg.dry_run and part.name in seen:
        return "dry run: one part of each kind"
    return None


def timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


if __name__ == "__main__":
    sys.exit(main())
