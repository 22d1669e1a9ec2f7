"""`training.ema`: the moving average of the weights against its closed form (start, every,
accumulation, skipped steps), an exact resume, validation on the average, and inference and
export choosing the average (or, with `--weights raw`, the trained weights)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import attrs
import pytest
import soundfile as sf
import torch

from lyra_core import BuildContext, hookimpl, param
from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.loader import validate_data
from lyra_core.services import checkpoint
from lyra_core.services.chunking import Chunking, reconstruct_audio
from lyra_core.services.model import LoadedModel, build_trained, load_model
from lyra_core.training import train

from .test_inference import RATE, TINY, tone

Weights = dict[str, torch.Tensor]


@attrs.frozen(kw_only=True)
class NaNOnceSpec:
    """Test-only loss: L1, except NaN at its `at`-th call (0: never)."""

    at: int = param(0, doc="the call that returns NaN")
    weight: float = param(1.0, doc="weight in the objective")

    def build(self, ctx: BuildContext):
        calls = [0]

        def loss(output, target):
            calls[0] += 1
            value = (output.reconstruction - target).abs().mean()
            return value * float("nan") if calls[0] == self.at else value

        return types.SimpleNamespace(to=lambda device: loss)


class Recorder:
    """Test hooks: the model's weights at the start and after each counted step."""

    def __init__(self) -> None:
        self.weights: dict[int, Weights] = {}

    @hookimpl
    def lyra_register_components(self, registry) -> None:
        registry.add("loss", "nan_once", NaNOnceSpec)

    @hookimpl
    def lyra_on_train_start(self, run) -> None:
        self.weights[run.step] = _clone(run.model.state_dict())

    @hookimpl
    def lyra_on_step_end(self, run, step, metrics) -> None:
        self.weights[step] = _clone(run.model.state_dict())


def _clone(state: Weights) -> Weights:
    return {k: v.detach().clone() for k, v in state.items()}


def spec_file(folder: Path, training: dict, losses: list | None = None) -> Path:
    spec = json.loads(json.dumps(TINY))
    spec["training"] |= training
    if losses is not None:
        spec["losses"] = losses
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def run(folder: Path, training: dict, plugins=None, losses: list | None = None) -> Path:
    """Train TINY with `training` changes in `folder`/run; the run directory."""
    spec = spec_file(folder, training, losses)
    reason = train(plugins or load_plugins(), str(spec), run_dir=str(folder / "run"), device="cpu")
    assert reason == "completed"
    return folder / "run"


def closed_form(weights: dict[int, Weights], decay: float, start: int, every: int, n: int):
    """ema_n = d^m·w_s + Σ_j (1 − d)·d^(m − j)·w_(s + j·every), over the m updates after the
    last copy at s = min(start, n); in float64."""
    s = min(start, n)
    updates = list(range(s + every, n + 1, every))
    m = len(updates)
    out = {}
    for key, base in weights[s].items():
        total = decay**m * base.double()
        for j, k in enumerate(updates, start=1):
            total += (1 - decay) * decay ** (m - j) * weights[k][key].double()
        out[key] = total
    return out


# -- the average ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ema", "training", "nan_at"),
    [
        ({"decay": 0.9}, {"steps": 5}, 3),  # step 2's first try is skipped (not finite)
        ({"decay": 0.8, "start": 2, "every": 3}, {"steps": 8, "accumulate": 2}, 0),
        ({"decay": 0.5, "start": 6}, {"steps": 4}, 0),  # all copies
    ],
    ids=["every-step-with-a-skipped-step", "start-every-accumulate", "before-start"],
)
def test_the_average_is_its_closed_form(tmp_path, ema, training, nan_at):
    recorder = Recorder()
    plugins = load_plugins(extra=[("recorder", recorder)])
    losses = [{"type": "nan_once", "at": nan_at}, {"type": "term", "name": "kl", "weight": 0.01}]
    steps = training["steps"]
    folder = run(
        tmp_path, {**training, "ema": ema, "checkpoint_every": steps}, plugins, losses=losses
    )
    state = checkpoint.load(folder / "checkpoints" / "last.pt")
    assert sorted(recorder.weights) == list(range(steps + 1))  # skipped tries are not counted
    assert all(torch.equal(state["model"][k], v) for k, v in recorder.weights[steps].items())
    spec = {"decay": 0.999, "start": 0, "every": 1} | ema
    want = closed_form(recorder.weights, spec["decay"], spec["start"], spec["every"], steps)
    assert state["ema"].keys() == state["model"].keys()
    for key, value in want.items():
        assert torch.allclose(state["ema"][key].double(), value, atol=1e-6, rtol=0), key
    moved = any(not torch.equal(state["ema"][k], state["model"][k]) for k in want)
    assert moved == (spec["start"] < steps)


def test_resuming_a_run_without_an_average_starts_it_from_its_weights(tmp_path):
    folder = run(tmp_path, {"steps": 2})
    assert checkpoint.load(folder / "checkpoints" / "last.pt")["ema"] is None
    ema = 'training.ema={"decay": 0.5}'
    train(load_plugins(), None, ["training.steps=3", ema], resume=str(folder), device="cpu")
    w2 = checkpoint.load(folder / "checkpoints" / "step-0000002.pt")["model"]
    last = checkpoint.load(folder / "checkpoints" / "last.pt")
    for key, value in last["ema"].items():
        assert torch.allclose(value, 0.5 * w2[key] + 0.5 * last["model"][key], atol=1e-6), key


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("decay", 1.0, "decay"), ("decay", 0, "decay"), ("every", 0, "every"), ("start", -1, "start")],
)
def test_out_of_range_settings_are_refused_with_their_path(field, value, message):
    data = json.loads(json.dumps(TINY))
    data["training"]["ema"] = {field: value}
    with pytest.raises(LyraError, match=rf"training\.ema\.{message}"):
        validate_data(data, load_plugins().registry)


# -- validation ------------------------------------------------------------------------------------


def validations(folder: Path) -> dict[int, dict[str, float]]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return {
        r["step"]: {k: v for k, v in r.items() if k.startswith("val/")}
        for r in records
        if "val/mel_distance" in r
    }


def test_validation_and_the_best_checkpoint_use_the_average(tmp_path):
    """An average that barely moves from the initial weights validates like them, while the
    trained weights (the same run without EMA) validate differently."""
    training = {"steps": 4, "validate_every": 2, "optimizer": {"type": "adam", "lr": 0.01}}
    still = {"decay": 0.999999, "start": 0}
    with_ema = validations(run(tmp_path / "ema", training | {"ema": still}))
    without = validations(run(tmp_path / "raw", training))
    assert sorted(with_ema) == sorted(without) == [0, 2, 4]
    assert with_ema[0] == pytest.approx(without[0], rel=1e-6)  # the same initial weights
    for step in (2, 4):
        assert with_ema[step] == pytest.approx(with_ema[0], rel=1e-4, abs=1e-6), step
    assert without[4]["val/mel_distance"] != pytest.approx(without[0]["val/mel_distance"], rel=1e-2)
    best = checkpoint.load(tmp_path / "ema" / "run" / "checkpoints" / "best.pt")
    assert best["best"] == min(with_ema[s]["val/mel_distance"] for s in (2, 4))


# -- inference and export ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory) -> Path:
    """Three steps at a high learning rate with a half-way average: the two sets differ."""
    folder = tmp_path_factory.mktemp("ema_run")
    training = {"steps": 3, "checkpoint_every": 3, "optimizer": {"type": "adam", "lr": 0.01}}
    return run(folder, training | {"ema": {"decay": 0.5}})


def loaded_from(path: Path, which: str) -> LoadedModel:
    """A LoadedModel built straight from one state dict of the checkpoint."""
    plugins = load_plugins()
    state = checkpoint.load(path)
    spec = validate_data(json.loads(state["spec"]), plugins.registry)
    model = build_trained(path, spec, state[which], plugins.registry, torch.device("cpu"))
    return LoadedModel(model, spec, "", path, state["step"], torch.device("cpu"), plugins.registry)


def reconstruct(run_dir: Path, wav: Path, out: Path, *weights: str) -> torch.Tensor:
    args = ["reconstruct", "--run", str(run_dir), str(wav), "-o", str(out), "--device", "cpu"]
    assert main([*args, "--bits", "float", "--no-dither", *weights]) == 0
    audio, rate = sf.read(out / wav.name, dtype="float32", always_2d=True)
    assert rate == RATE
    return torch.from_numpy(audio.T)


def test_reconstruct_uses_the_average_unless_raw_is_asked_for(ema_run, tmp_path, capsys):
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(0.3), RATE, subtype="FLOAT")
    default = reconstruct(ema_run, wav, tmp_path / "default")
    ema = reconstruct(ema_run, wav, tmp_path / "ema", "--weights", "ema")
    raw = reconstruct(ema_run, wav, tmp_path / "raw", "--weights", "raw")
    assert torch.equal(default, ema)
    assert float((ema - raw).abs().max()) > 1e-4
    audio = torch.from_numpy(tone(0.3))[None, None]
    last = ema_run / "checkpoints" / "last.pt"
    chunking = Chunking(10.0, 0.5)
    for which, got in (("model", raw), ("ema", ema)):
        want = reconstruct_audio(loaded_from(last, which), audio, chunking)[0]
        assert torch.allclose(got, want, atol=1e-6), which


def test_the_loaded_model_says_which_weights(ema_run):
    plugins = load_plugins()
    assert load_model(ema_run, plugins, "cpu").describe()["weights"] == "ema"
    assert load_model(ema_run, plugins, "cpu", weights="raw").describe()["weights"] == "raw"


def test_asking_for_the_average_of_a_run_without_one_is_one_clear_error(ema_run, tmp_path, capsys):
    state = checkpoint.load(ema_run / "checkpoints" / "last.pt")
    plain = tmp_path / "plain.pt"
    checkpoint.save_atomic({**state, "ema": None}, plain)
    assert load_model(plain, load_plugins(), "cpu").weights == "raw"  # the default falls back
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(0.1), RATE)
    args = ["reconstruct", "--run", str(plain), str(wav), "-o", str(tmp_path / "out")]
    assert main([*args, "--device", "cpu", "--weights", "ema"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(plain) in err and "no moving average" in err and "--weights raw" in err
    assert not (tmp_path / "out" / "tone.wav").exists()


def test_export_holds_the_average_by_default(ema_run, tmp_path):
    path = tmp_path / "model.ts"
    assert main(["export", "--run", str(ema_run), "-o", str(path), "--device", "cpu"]) == 0
    files = {"lyra.json": ""}
    exported = torch.jit.load(str(path), _extra_files=files)
    assert json.loads(files["lyra.json"])["weights"] == "ema"
    x = torch.from_numpy(tone(0.2))[None, None]
    plugins = load_plugins()
    with torch.no_grad():
        got = exported(x)
        for weights, same in (("ema", True), ("raw", False)):
            model = load_model(ema_run, plugins, "cpu", weights=weights).model
            want = model.decode(model.encode(x)[0], x.shape[-1])
            assert torch.allclose(got, want, atol=1e-4) == same, weights
