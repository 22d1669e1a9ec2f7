"""`lyra export`: TorchScript that runs with torch alone and matches the Lyra model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lyra_core.cli import main
from lyra_core.context import BuildContext
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.inference.export import build_torchscript, export_onnx
from lyra_core.loader import resolved, validate_data
from lyra_core.services import checkpoint
from lyra_core.services.model import load_model
from tests.helpers import consume
from tests.test_inference import TINY

# Run in a fresh interpreter (tests/helpers.py: FRESH_PREAMBLE).
CONSUMER = r"""
x = inputs
with torch.no_grad():
    z = model.encode(x)
    out = {"z": z, "decoded": model.decode(z, x.shape[-1]), "forward": model(x),
           "native": model.decode(z, None)}
out["rate"] = torch.tensor(model.sample_rate)
out["lyra_importable"] = torch.tensor(lyra)
torch.save(out, sys.argv[4])
"""


def make_checkpoint(folder: Path, model_spec: dict, plugins, seed: int = 0) -> Path:
    """A run directory whose checkpoint holds randomly initialised (perturbed) weights."""
    data = {**TINY, "model": model_spec}
    spec = validate_data(data, plugins.registry)
    torch.manual_seed(seed)
    ctx = BuildContext(registry=plugins.registry, sample_rate=8000, channels=1)
    model = spec.model.build(ctx)
    with torch.no_grad():  # move every parameter off its init (zero-init flows, unit alphas)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    text = json.dumps(resolved(spec, plugins.registry))
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "spec.json").write_text(text)
    state = {"format": checkpoint.FORMAT, "model": model.state_dict(), "spec": text, "step": 0}
    checkpoint.save_atomic({**state, "plugins": plugins.versions()}, folder / "checkpoints/last.pt")
    return folder


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def test_exported_torchscript_runs_without_lyra_and_matches(plugins, tmp_path):
    run = make_checkpoint(tmp_path / "run", TINY["model"], plugins)  # PQMF + weight norm
    target = tmp_path / "out" / "model.ts"
    assert main(["export", "--run", str(run), "-o", str(target), "--device", "cpu"]) == 0
    loaded = load_model(run, plugins, device="cpu")
    x = 0.1 * torch.randn(2, 1, 3001, generator=torch.Generator().manual_seed(5))
    got = consume(CONSUMER, target, x, tmp_path)
    assert not bool(got["lyra_importable"]) and int(got["rate"]) == 8000
    with torch.no_grad():
        z = loaded.model.encode(x)[0]
        y = loaded.model.decode(z, x.shape[-1])
        native = loaded.model.decode(z)
    assert got["z"].shape == z.shape == (2, 4, 188)
    for name, want in (("z", z), ("decoded", y), ("forward", y), ("native", native)):
        assert got[name].shape == want.shape
        assert (got[name] - want).abs().max() <= 1e-4, name
    exported = torch.jit.load(str(target))
    names = [n for n, _ in exported.named_parameters()] + [n for n, _ in exported.named_buffers()]
    assert not any("parametrizations" in n or "original" in n for n in names)  # folded
    assert any("analysis_weight" in n for n in names)  # PQMF's filters travel in the file
    extra = {"lyra.json": ""}
    torch.jit.load(str(target), _extra_files=extra)
    assert json.loads(extra["lyra.json"])["spec_hash"] == loaded.spec_hash


COMPONENTS = {
    "single_vector_learned": {
        "type": "single_vector",
        "latent_dim": 4,
        "expand": "learned",
        "pooling": "attention",
    },
    "realnvp_flow_prior": {"type": "realnvp", "latent_dim": 4, "depth": 2, "hidden": 8},
    "deterministic": {"type": "deterministic", "latent_dim": 4},
}


@pytest.mark.parametrize("bottleneck", sorted(COMPONENTS))
def test_other_bottlenecks_and_padding_export_and_match(plugins, tmp_path, bottleneck):
    spec = {**TINY["model"], "bottleneck": COMPONENTS[bottleneck]}
    if bottleneck == "deterministic":
        spec["pad"] = "bands"
    loaded = load_model(make_checkpoint(tmp_path, spec, plugins), plugins, device="cpu")
    scripted = build_torchscript(loaded)  # itself checked at two lengths
    x = 0.1 * torch.randn(1, 1, 2222, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = loaded.model(x)
        got_z, got_y = scripted.encode(x), scripted(x)
    assert got_z.shape == want.latent.shape
    assert (got_z - want.latent).abs().max() <= 1e-4
    assert (got_y - want.reconstruction).abs().max() <= 1e-4


def test_onnx_needs_onnx(plugins, tmp_path):
    loaded = load_model(make_checkpoint(tmp_path, TINY["model"], plugins), plugins, device="cpu")
    if importlib.util.find_spec("onnx") is None:
        with pytest.raises(LyraError, match="needs the 'onnx' package"):
            export_onnx(loaded, tmp_path / "model.onnx")
    else:
        written = export_onnx(loaded, tmp_path / "model.onnx")
        assert all(p.stat().st_size > 0 for p in written)
