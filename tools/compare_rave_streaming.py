"""Lyra's causal streaming beside RAVE's cached-convolution streaming, same architecture, same CPU.

    .venv/bin/python tools/compare_rave_streaming.py --rave-python /tmp/rave-env/bin/python
    .venv/bin/python tools/compare_rave_streaming.py --side lyra    # Lyra's side alone, JSON lines

Lyra's side: experiments/reference/rave_v2.json with `"causal": true`, random weights, saved and
loaded like a trained run (eval, weight norm folded); its eager `Stream` and its
`lyra export --streaming` TorchScript module (both run the convs on their channels-last oneDNN
path, `runs.streaming.channels_last_inference`), and the non-causal model decoding the same
frames offline (plain conv1d, as the loaded model runs it). RAVE's side runs in the RAVE
environment's python (acids-rave 2.3.1 with cached_conv and gin-config; nothing of RAVE is in
this repository): `rave.RAVE()` from the package's own
`configs/v2.gin` + `configs/causal.gin` with `cc.use_cached_conv(True)`, weight norm removed, as
RAVE's `scripts/export.py --streaming` builds it; its encoder, generator and PQMF, eager and
`torch.jit.script`ed, and the non-causal v2 model decoding offline.

Each call takes one chunk of 2048 samples (one latent frame at a hop of 2048), batch 1; each row
is the median of `--rounds` calls after `--warmup`, on 1 and 2 threads. The sides alternate as
separate processes `--repeats` times, so load changes on a shared machine reach both; the table
gives the median over repeats of each process's median as a real-time factor (audio seconds per
compute second) and Lyra/RAVE, the ratio of the two (above 1: Lyra is faster), and the same ratio
from the fastest call of all repeats and from the median CPU time of the process (both less
disturbed by other work on a shared machine). The children run with OMP_WAIT_POLICY=PASSIVE
unless it is set otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "experiments" / "reference" / "rave_v2.json"
CHUNK = 2048
SAMPLE_RATE = 44100
SETTINGS = (
    "offline_decode",
    "stream_decode",
    "stream_encode",
    "torchscript_decode",
    "torchscript_encode",
)


def timed(
    fn: Callable[[torch.Tensor], Any], arg: torch.Tensor, rounds: int, warmup: int
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per call of `fn(arg)`, `rounds` calls after `warmup` calls."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn(arg)
        times = []
        for _ in range(rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            fn(arg)
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def measure(side: str, fns: dict[str, tuple[Callable, torch.Tensor]], args: Any) -> None:
    """Print one JSON line per setting and thread count: median and fastest wall seconds, and
    median CPU seconds (all threads of the process: less disturbed by other work than wall)."""
    for threads in args.threads:
        torch.set_num_threads(threads)
        for setting, (fn, arg) in fns.items():
            wall, cpu = zip(*timed(fn, arg, args.rounds, args.warmup), strict=True)
            row = {"side": side, "setting": setting, "threads": threads}
            row |= {"seconds": statistics.median(wall), "best": min(wall)}
            print(json.dumps(row | {"cpu": statistics.median(cpu)}), flush=True)


# -- Lyra --------------------------------------------------------------------------------------


def lyra_loaded(causal: bool, folder: Path) -> Any:
    """The RAVE v2-sized model with random weights, checkpointed and loaded like a trained run."""
    from lyra_core.discovery import load_plugins
    from lyra_core.loader import validate_data
    from lyra_core.services.model import load_model, save_model

    plugins = load_plugins()
    data = json.loads(SPEC.read_text())
    data["model"]["causal"] = causal
    spec = validate_data(data, plugins.registry, str(SPEC))
    torch.manual_seed(0)
    model = spec.model.build(spec.context(plugins.registry))
    parts = {name: count(getattr(model, name)) for name in ("encoder", "decoder")}
    run = folder / f"rave_v2-{causal}"
    save_model(model, spec, plugins.registry, run, plugins.versions())
    return load_model(run, plugins, device="cpu"), parts


def lyra_side(args: Any) -> None:
    from lyra_core.inference.stream_export import build_streaming_torchscript
    from lyra_core.services.streaming import Stream

    with tempfile.TemporaryDirectory() as folder:
        causal, parts = lyra_loaded(True, Path(folder))
        offline, _ = lyra_loaded(False, Path(folder))
    print(json.dumps({"side": "lyra", "params": parts | {"total": sum(parts.values())}}))
    x, z = inputs(causal.latent_channels)
    stream = Stream(causal.model, causal.sample_rate)
    scripted = build_streaming_torchscript(causal)
    scripted.reset()
    measure(
        "lyra",
        {
            "offline_decode": (offline.model.decode, z),
            "stream_decode": (stream.decode, z),
            "stream_encode": (stream.encode, x),
            "torchscript_decode": (scripted.decode, z),
            "torchscript_encode": (scripted.encode, x),
        },
        args,
    )


# -- RAVE (run by the RAVE environment's python) -----------------------------------------------


def import_rave() -> types.ModuleType:
    """`import rave` with shims for what newer SciPy/NumPy removed and for udls's flask import."""
    import numpy as np
    import scipy.signal

    warnings.filterwarnings("ignore")
    # rave/pqmf.py imports scipy.signal.kaiser (moved to scipy.signal.windows, SciPy >= 1.13)
    if not hasattr(scipy.signal, "kaiser"):
        scipy.signal.kaiser = scipy.signal.windows.kaiser
    # udls (imported by v1.gin through rave.dataset) imports flask for its dataset server only
    sys.modules.setdefault("flask", types.ModuleType("flask"))
    import rave
    import rave.pqmf

    def kaiserord(ripple: Any, width: Any) -> Any:  # fmin hands it 1-element arrays
        return scipy.signal.kaiserord(float(np.ravel(ripple)[0]), float(np.ravel(width)[0]))

    def firwin(numtaps: int, cutoff: Any, *rest: Any, nyq: Any = None, **kw: Any) -> Any:
        if nyq is not None:  # `nyq=` was removed in SciPy 1.14; fs is twice it
            kw["fs"] = 2 * nyq
        return scipy.signal.firwin(numtaps, np.ravel(cutoff), *rest, **kw)

    rave.pqmf.kaiserord, rave.pqmf.firwin = kaiserord, firwin
    return rave


def rave_model(rave: types.ModuleType, causal: bool) -> tuple[Any, dict[str, int]]:
    """rave.RAVE() from the package's v2.gin (+ causal.gin), cached convs when causal."""
    import cached_conv as cc
    import gin

    gin.clear_config()
    cc.use_cached_conv(causal)
    configs = ["configs/v2.gin", *(["configs/causal.gin"] if causal else [])]
    gin.parse_config_files_and_bindings(configs, [])
    if causal and gin.query_parameter("cc.get_padding.mode") != "causal":
        raise RuntimeError("causal.gin did not make the paddings causal")
    torch.manual_seed(0)
    model = rave.RAVE().eval()
    parts = {"encoder": count(model.encoder), "decoder": count(model.decoder)}
    for module in model.modules():  # as export.py does before scripting
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    return model, parts


class RaveCodec(torch.nn.Module):
    """The core of RAVE's exported encode/decode: PQMF, encoder, reparametrize / generator, PQMF
    synthesis (export.py's PCA projection and fidelity cut of the latent left out)."""

    def __init__(self, model: Any):
        super().__init__()
        self.pqmf, self.encoder, self.decoder = model.pqmf, model.encoder, model.decoder

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.reparametrize(self.encoder(self.pqmf(x)))[0]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.pqmf.inverse(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def rave_side(args: Any) -> None:
    rave = import_rave()
    causal, parts = rave_model(rave, True)
    offline, _ = rave_model(rave, False)
    print(json.dumps({"side": "rave", "params": parts | {"total": sum(parts.values())}}))
    x, z = inputs(128)
    stream = RaveCodec(causal)
    with torch.no_grad():  # cached convs must have run once before scripting (export.py)
        stream.decode(stream.encode(x))
        scripted = torch.jit.script(RaveCodec(causal))
    measure(
        "rave",
        {
            "offline_decode": (RaveCodec(offline).decode, z),
            "stream_decode": (stream.decode, z),
            "stream_encode": (stream.encode, x),
            "torchscript_decode": (scripted.decode, z),
            "torchscript_encode": (scripted.encode, x),
        },
        args,
    )


# -- both --------------------------------------------------------------------------------------


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def inputs(latent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of audio and one chunk's latent frames, batch 1."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, 1, CHUNK, generator=gen), torch.randn(1, latent, 1, generator=gen)


def child(python: str, side: str, args: Any) -> list[dict]:
    command = [python, __file__, "--side", side, "--rounds", str(args.rounds)]
    command += ["--warmup", str(args.warmup), "--threads", *map(str, args.threads)]
    env = os.environ | {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def table(rows: list[dict], threads: list[int]) -> str:
    """Real-time factors (median over repeats of each process's median) and Lyra/RAVE from the
    median wall time, the fastest call and the median CPU time."""
    lines = [
        "| setting | threads | Lyra RTF | RAVE RTF | Lyra/RAVE "
        "| best: Lyra/RAVE | CPU: Lyra/RAVE |",
        "|---|---|---|---|---|---|---|",
    ]
    audio = CHUNK / SAMPLE_RATE
    for setting in SETTINGS:
        for n in threads:
            got = {}
            for side in ("lyra", "rave"):
                mine = [
                    r for r in rows if (r["side"], r["setting"], r["threads"]) == (side, setting, n)
                ]
                got[side] = {
                    "rtf": audio / statistics.median(r["seconds"] for r in mine),
                    "best": audio / min(r["best"] for r in mine),
                    "cpu": audio / statistics.median(r["cpu"] for r in mine),
                }
            lyra, rave = got["lyra"], got["rave"]
            ratios = " | ".join(f"{lyra[k] / rave[k]:.2f}" for k in ("rtf", "best", "cpu"))
            lines.append(f"| {setting} | {n} | {lyra['rtf']:.2f} | {rave['rtf']:.2f} | {ratios} |")
    return "\n".join(lines)


def compare(args: Any) -> None:
    rows: list[dict] = []
    for repeat in range(args.repeats):
        for side, python in (("rave", args.rave_python), ("lyra", sys.executable)):
            got = child(python, side, args)
            load = os.getloadavg()[0]
            for row in got:
                if "params" in row and repeat == 0:
                    print(f"{side} parameters: {row['params']}")
            rows += [r | {"repeat": repeat, "load": load} for r in got if "seconds" in r]
            print(f"repeat {repeat + 1}/{args.repeats}: {side} done, load {load:.2f}", flush=True)
    print(table(rows, args.threads))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rave-python", help="the python of an environment with acids-rave")
    parser.add_argument("--side", choices=("lyra", "rave"), help="run one side, print JSON lines")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per setting")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before them")
    parser.add_argument("--repeats", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args(argv)
    if args.side == "lyra":
        lyra_side(args)
    elif args.side == "rave":
        rave_side(args)
    elif args.rave_python:
        compare(args)
    else:
        parser.error("give --rave-python (to compare) or --side")


if __name__ == "__main__":
    main()
