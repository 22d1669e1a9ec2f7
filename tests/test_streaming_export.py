"""`lyra export --streaming`: a causal model as nn~-style streaming TorchScript and as an ONNX step
with explicit state, each equal to Lyra's own stream and to the model's offline causal pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.inference.stream_export import export_streaming_torchscript, non_causal_paths
from lyra_core.loader import validate_data
from lyra_core.services.model import load_model
from lyra_core.services.streaming import Stream, set_streaming

from .helpers import consume
from .test_export import make_checkpoint
from .test_inference import TINY

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SIZES = [1, 3, 2, 4, 1, 5]  # chunk lengths, in hops

# In a fresh interpreter (tests/helpers.py: FRESH_PREAMBLE), it streams chunks through
# `forward`, restarts, runs nn~'s registration test of each method (zeros [1, in_channels,
# 8192 / in_ratio] -> [1, out_channels, 8192 / out_ratio]) and reads the attributes nn~ reads.
CONSUMER = r"""
x, sizes = inputs
out = {"lyra_importable": lyra, "methods": model.get_methods(),
       "attributes": model.get_attributes()}
with torch.no_grad():
    chunks, start = [], 0
    for n in sizes:
        chunks.append(model(x[..., start : start + n]))
        start += n
    out["streamed"] = torch.cat(chunks, -1)
    model.reset()
    out["restarted"] = model(x[..., : sizes[0]])
    model.reset()
    out["encoded"] = model.encode(x[..., : sizes[0]])
    out["decoded"] = model.decode(out["encoded"])
    for name in out["methods"]:
        p = [int(v) for v in getattr(model, name + "_params")]
        model.reset()
        y = getattr(model, name)(torch.zeros(1, p[0], 8192 // p[1]))
        out[name] = {"params": p, "shape": list(y.shape), "dtype": str(y.dtype),
                     "inputs": list(getattr(model, name + "_input_labels")),
                     "outputs": list(getattr(model, name + "_output_labels"))}
    try:
        model(torch.zeros(1, 1, sizes[0] + 1))
        out["off_hop"] = ""
    except Exception as exc:
        out["off_hop"] = str(exc)
for key in ("sample_rate", "sr", "in_channels", "out_channels", "hop_length", "latent_size",
            "delay", "chunk_multiple"):
    out[key] = getattr(model, key)
out["latency"] = model.latency(2048)
torch.save(out, sys.argv[4])
"""


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def causal_tiny() -> dict:
    spec = json.loads(json.dumps(TINY))
    spec["model"]["causal"] = True
    spec["training"]["steps"] = 1
    spec["training"]["checkpoint_every"] = 1
    return spec


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny causal model trained one step with `lyra run`."""
    folder = tmp_path_factory.mktemp("streaming_export")
    (folder / "spec.json").write_text(json.dumps(causal_tiny()))
    args = ["run", str(folder / "spec.json"), "--run-dir", str(folder / "run"), "--device", "cpu"]
    assert main(args) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def loaded(run_dir, plugins):
    return load_model(run_dir, plugins, device="cpu")


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("ts") / "stream.ts"
    args = ["export", "--run", str(run_dir), "--streaming", "-o", str(target), "--device", "cpu"]
    assert main(args) == 0
    return target


def lyra_stream(loaded, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Lyra's own `Stream` over consecutive chunks of x."""
    stream, outs, start = Stream(loaded.model, loaded.sample_rate), [], 0
    for n in sizes:
        outs.append(stream(x[..., start : start + n]))
        start += n
    stream.close()
    return torch.cat(outs, -1)


def offline(loaded, x: torch.Tensor) -> torch.Tensor:
    set_streaming(loaded.model, False)
    with torch.no_grad():
        return loaded.model.decode(loaded.model.encode(x)[0])


def test_streaming_torchscript_runs_without_lyra_and_equals_the_stream(loaded, exported, tmp_path):
    hop = loaded.hop_length
    sizes = [hop * s for s in SIZES]
    x = 0.1 * torch.randn(1, 1, sum(sizes), generator=torch.Generator().manual_seed(3))
    got = consume(CONSUMER, exported, (x, sizes), tmp_path)
    assert not got["lyra_importable"]
    want = lyra_stream(loaded, x, sizes)
    assert got["streamed"].shape == want.shape == x.shape
    assert (got["streamed"] - want).abs().max() <= 1e-4
    assert (got["streamed"] - offline(loaded, x)).abs().max() <= 1e-4
    first = want[..., : sizes[0]]
    assert (got["restarted"] - first).abs().max() <= 1e-4  # reset() starts a new stream
    assert (got["decoded"] - first).abs().max() <= 1e-4
    assert "multiples of 16 samples" in got["off_hop"]  # a chunk off the hop is refused


def test_streaming_torchscript_carries_what_nn_tilde_reads(loaded, exported, tmp_path):
    hop, d, rate = loaded.hop_length, loaded.latent_channels, loaded.sample_rate
    got = consume(CONSUMER, exported, (torch.zeros(1, 1, hop), [hop]), tmp_path)
    assert got["methods"] == ["encode", "decode", "forward"] and got["attributes"] == []
    assert got["encode"]["params"] == [1, 1, d, hop] and got["encode"]["shape"] == [
        1,
        d,
        8192 // hop,
    ]
    assert got["decode"]["params"] == [d, hop, 1, 1] and got["decode"]["shape"] == [1, 1, 8192]
    assert got["forward"]["params"] == [1, 1, 1, 1] and got["forward"]["shape"] == [1, 1, 8192]
    for name in got["methods"]:
        p = got[name]["params"]
        assert got[name]["dtype"] == "torch.float32"
        assert len(got[name]["inputs"]) == p[0] and len(got[name]["outputs"]) == p[2]
    assert got["encode"]["outputs"][0] == "(signal) latent 1"
    assert (got["sample_rate"], got["sr"], got["hop_length"], got["latent_size"]) == (
        rate,
        rate,
        hop,
        d,
    )
    assert got["delay"] == loaded.delay > 0 and got["chunk_multiple"] == hop
    assert got["latency"] == 2048 + loaded.delay
    extra = {"lyra.json": ""}
    torch.jit.load(str(exported), _extra_files=extra)
    meta = json.loads(extra["lyra.json"])
    assert meta["spec_hash"] == loaded.spec_hash and meta["streaming"]["delay"] == loaded.delay


def test_streaming_torchscript_takes_a_new_batch_size_as_a_new_stream(loaded, exported):
    module, hop = torch.jit.load(str(exported)), loaded.hop_length
    x = 0.1 * torch.randn(3, 1, 8 * hop, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        module(x[:1, :, :hop])  # a batch-1 stream, then a batch of 3 restarts
        got = torch.cat([module(x[..., : 3 * hop]), module(x[..., 3 * hop :])], -1)
    assert (got - offline(loaded, x)).abs().max() <= 1e-4


def test_the_file_keeps_the_weights_laid_out_for_the_channels_last_convs(exported):
    """Saved and loaded, each kernel > 1 weight is still [A, K, B] in memory (oneDNN's layout),
    and only once in the file (a parameter, no traced copy)."""
    module = torch.jit.load(str(exported))
    weights = {k: v for k, v in module.state_dict().items() if v.dim() == 3 and v.shape[-1] > 1}
    assert weights and all(w.stride(1) == 1 and not w.is_contiguous() for w in weights.values())
    stored = sum(v.numel() * v.element_size() for v in module.state_dict().values())
    assert exported.stat().st_size < 1.2 * stored + 2**20


def test_streaming_onnx_step_with_explicit_state_equals_the_stream(loaded, run_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    hop, chunk = loaded.hop_length, 4 * loaded.hop_length
    target = tmp_path / "step.onnx"
    argv = ["export", "--run", str(run_dir), "--streaming", "--format", "onnx"]
    assert main([*argv, "--chunk-samples", str(chunk), "-o", str(target), "--device", "cpu"]) == 0
    described = json.loads(target.with_suffix(".json").read_text())
    assert described["chunk"] == chunk and described["streaming"]["hop_length"] == hop
    assert described["latency_samples"] == chunk + loaded.delay
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["x"] + [s["input"] for s in described["states"]]
    assert [o.name for o in session.get_outputs()] == ["y"] + [
        s["output"] for s in described["states"]
    ]
    states = {s["input"]: torch.zeros(s["shape"]).numpy() for s in described["states"]}
    x = 0.1 * torch.randn(1, 1, 10 * chunk, generator=torch.Generator().manual_seed(5))
    outs = []
    for i in range(10):
        feed = {"x": x[..., i * chunk : (i + 1) * chunk].numpy(), **states}
        y, *new = session.run(None, feed)
        states = {s["input"]: v for s, v in zip(described["states"], new, strict=True)}
        outs.append(torch.from_numpy(y))
    want = lyra_stream(loaded, x, [chunk] * 10)
    assert (torch.cat(outs, -1) - want).abs().max() <= 1e-4


def test_onnx_chunk_off_the_hop_is_refused(run_dir, tmp_path, capsys):
    argv = ["export", "--run", str(run_dir), "--streaming", "--format", "onnx", "--device", "cpu"]
    assert main([*argv, "--chunk-samples", "17", "-o", str(tmp_path / "a.onnx")]) == 2
    assert "must be a multiple of 16 samples" in capsys.readouterr().err


def test_a_non_causal_model_is_refused_with_its_non_causal_parts(plugins, tmp_path, capsys):
    run = make_checkpoint(tmp_path / "run", TINY["model"], plugins)
    argv = ["export", "--run", str(run), "--streaming", "-o", str(tmp_path / "m.ts")]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "is not causal" in err and "Traceback" not in err
    for path in ("model.causal", "model.filterbank.causal", "model.encoder.causal"):
        assert path in err
    assert "model.decoder.blocks[0].causal" in err or "model.decoder.block.causal" in err
    assert '"causal": true on the model' in err and not (tmp_path / "m.ts").exists()
    with pytest.raises(LyraError, match="not causal"):
        export_streaming_torchscript(load_model(run, plugins, device="cpu"), tmp_path / "n.ts")


def test_non_causal_paths_walks_nested_lists():
    spec = {"causal": False, "a": [{"causal": True}, {"b": {"causal": False}}]}
    assert non_causal_paths(spec, "model") == ["model.causal", "model.a[1].b.causal"]


def test_the_causal_demo_is_the_demo_made_causal_and_streams(plugins):
    demo = json.loads((EXPERIMENTS / "snake_pqmf.json").read_text())
    causal = json.loads((EXPERIMENTS / "snake_pqmf_causal.json").read_text())
    assert causal["model"].pop("causal") is True and causal.pop("name") == "snake_pqmf_causal"
    demo.pop("name")
    assert causal == demo
    spec = validate_data(
        json.loads((EXPERIMENTS / "snake_pqmf_causal.json").read_text()), plugins.registry
    )
    torch.manual_seed(0)
    model = spec.model.build(spec.context(plugins.registry)).eval()
    for module in model.modules():  # the eager Snake: no compile in a test
        if getattr(module, "implementation", None) not in (None, "eager"):
            module.implementation = "eager"
    assert model.causal and model.delay > 0
    x = 0.1 * torch.randn(1, 1, 4096, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = model.decode(model.encode(x)[0])
    stream = Stream(model, 44100)
    got = torch.cat([stream(x[..., :2048]), stream(x[..., 2048:])], -1)
    stream.close()
    assert (got - want).abs().max() <= 1e-4
