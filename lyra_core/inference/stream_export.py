"""`lyra export --streaming`: a causal model as a streaming TorchScript (nn~) or ONNX step.

A causal model (`"causal": true` on the model) keeps, in each of its `StreamingState` layers, what
the next chunk needs of the past (`lyra_core.services.streaming`). Exporting it:

- Each half of the model (encode: analysis -> encoder -> bottleneck mean; decode: decoder ->
  synthesis) is traced as one *step* with its state explicit, `(x, states) -> (y, new states)`:
  before the step, each layer's `cache` is set from `states` (a Python assignment, so the trace
  records where the data flows) and the step returns the caches it leaves. The state's shapes come
  from a first step on zeros; the initial state is zeros of those shapes (what a fresh stream sees).
  The plugin modules are not TorchScript-compatible source (Python shape checks, `super()`
  calls, string annotations), so the steps are traced, as `lyra export` traces its stages.
  The convs are first switched to their channels-last inference path
  (`runs.streaming.channels_last_inference`), so the traced steps run oneDNN's
  kernels on the CPU and the file keeps the weights laid out for them.
- TorchScript: a `torch.jit.script`ed wrapper holds the state as list attributes and offers
  `encode(x)`, `decode(z)`, `forward(x)` and `reset()`, with what nn~ reads of a RAVE export:
  `get_methods()`, `get_attributes()`, `<method>_params` buffers ([in channels, in ratio, out
  channels, out ratio]) and `<method>_input_labels` / `_output_labels`, plus `sample_rate`,
  `hop_length`, `latent_size`, `delay` and `chunk_multiple` attributes. A chunk that is not a
  multiple of `chunk_multiple` samples is refused (padding would put silence into the stream's
  state and shift everything after it). A new batch size (or device) starts a new stream.
- ONNX: one encode+decode step of a fixed chunk, the state as inputs `state_<i>` and outputs
  `new_state_<i>`, with a JSON beside it naming them, their shapes and the metadata.

Every export is checked against the model's offline causal pass before it is written.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lyra_core.errors import LyraError
from lyra_core.inference.export import (
    TOLERANCE,
    EncodeCore,
    _quiet,
    _stages,
    _trace,
    need_onnx,
    save_torchscript,
)
from lyra_core.interfaces import StreamingState
from lyra_core.loader import resolved
from lyra_core.services.atomic import write_text
from lyra_core.services.model import LoadedModel
from lyra_core.services.streaming import (
    channels_last_inference,
    chunk_multiple,
    set_streaming,
    streaming_layers,
)

DEFAULT_CHUNK = 2048  # samples per ONNX step (rounded up to the chunk multiple)


# -- what can stream ---------------------------------------------------------------------------


def non_causal_paths(data: Any, path: str = "") -> list[str]:
    """Spec paths (`model.encoder.causal`, ...) of every `causal` field set to false."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "causal" and value is False:
                found.append(where)
            else:
                found += non_causal_paths(value, where)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += non_causal_paths(value, f"{path}[{i}]")
    return found


def require_causal(loaded: LoadedModel) -> None:
    """Refuse a model that cannot stream, naming the spec's non-causal components."""
    if getattr(loaded.model, "causal", False):
        return
    spec = resolved(loaded.spec, loaded.registry)
    paths = non_causal_paths(spec.get("model", {}), "model") or ["model.causal (absent)"]
    paths.sort(key=lambda p: p != "model.causal")  # the model's own flag first
    raise LyraError(
        f"export --streaming: model '{loaded.name}' is not causal, so it cannot stream "
        f"(its output depends on later input); causal false at: {', '.join(paths)}. "
        'Fix: set "causal": true on the model in the spec and train it again'
    )


# -- the steps ---------------------------------------------------------------------------------


class DecodeStepCore(nn.Module):
    """Latent [B, D, F] -> audio [B, C, F·hop]: decoder, then filterbank synthesis."""

    def __init__(self, filterbank: nn.Module | None, decoder: nn.Module, bottleneck: nn.Module):
        super().__init__()
        self.filterbank, self.decoder, self.bottleneck = filterbank, decoder, bottleneck

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.decoder(self.bottleneck.decoder_input(z, z.shape[-1]))
        return self.filterbank.synthesis(y) if self.filterbank is not None else y


class Step(nn.Module):
    """One streaming step of `core` with its state explicit: (x, states) -> (y, new states)."""

    def __init__(self, core: nn.Module, layers: list[StreamingState]):
        super().__init__()
        self.core = core
        self.layers = tuple(layers)  # a tuple: not registered again as submodules

    def forward(
        self, x: torch.Tensor, states: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        for layer, state in zip(self.layers, states, strict=True):
            layer.cache = state
        y = self.core(x)
        return y, [layer.cache for layer in self.layers]


class FlatStep(nn.Module):
    """Encode then decode in one step, states as separate arguments and outputs (for ONNX)."""

    def __init__(self, encode: Step, decode: Step):
        super().__init__()
        self.encode, self.decode = encode, decode
        self.split = len(encode.layers)

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z, first = self.encode(x, list(states[: self.split]))
        y, second = self.decode(z, list(states[self.split :]))
        return (y, *first, *second)


def _stateful(
    model: nn.Module, core: nn.Module, x: torch.Tensor
) -> tuple[list[StreamingState], list[list[int]], torch.Tensor]:
    """The layers `core` keeps state in (non-empty caches after a step on `x`), their state's
    shapes, and the step's output."""
    set_streaming(model, True)
    y = core(x)
    layers = [m for m in streaming_layers(core) if m.cache.dim() > 1 and m.cache.numel() > 0]
    shapes = [list(m.cache.shape) for m in layers]
    set_streaming(model, True)
    return layers, shapes, y


def zeros(shapes: list[list[int]], device: torch.device) -> list[torch.Tensor]:
    return [torch.zeros(shape, device=device) for shape in shapes]


def build_steps(
    loaded: LoadedModel, chunk: int
) -> tuple[Step, list[list[int]], Step, list[list[int]]]:
    """The traced-ready encode and decode steps and their batch-1 state shapes."""
    require_causal(loaded)
    if loaded.single_vector:
        raise LyraError(f"export --streaming: model '{loaded.name}' has a single-vector latent")
    filterbank, encoder, bottleneck, decoder = _stages(loaded)
    model, dev = loaded.model, loaded.device
    channels_last_inference(model)
    encode_core = EncodeCore(filterbank, encoder, bottleneck).eval()
    decode_core = DecodeStepCore(filterbank, decoder, bottleneck).eval()
    x = torch.zeros(1, loaded.channels, chunk, device=dev)
    enc_layers, enc_shapes, z = _stateful(model, encode_core, x)
    dec_layers, dec_shapes, _ = _stateful(model, decode_core, torch.zeros_like(z))
    if set(enc_layers) & set(dec_layers):
        raise LyraError("export --streaming: a layer keeps state in both encode and decode")
    return Step(encode_core, enc_layers), enc_shapes, Step(decode_core, dec_layers), dec_shapes


# -- TorchScript -------------------------------------------------------------------------------


def metadata(loaded: LoadedModel) -> dict[str, Any]:
    """What a host needs to run the stream: rates, channels, ratio, latency."""
    return {
        "sample_rate": loaded.sample_rate,
        "in_channels": loaded.channels,
        "out_channels": loaded.channels,
        "hop_length": loaded.hop_length,
        "latent_size": loaded.latent_channels,
        "frame_multiple": loaded.frame_multiple,
        "chunk_multiple": chunk_multiple(loaded.model),
        "delay": loaded.delay,
        "latency": "chunk + delay samples (a chunk is heard once it is complete)",
    }


def build_streaming_torchscript(loaded: LoadedModel) -> torch.jit.ScriptModule:
    """The scripted, checked streaming module for `loaded` (not yet saved)."""
    multiple = chunk_multiple(loaded.model)
    chunk = multiple * max(1, DEFAULT_CHUNK // multiple)
    with torch.inference_mode(False), torch.no_grad(), _quiet():
        encode, enc_shapes, decode, dec_shapes = build_steps(loaded, chunk)
        dev = loaded.device
        x = torch.zeros(1, loaded.channels, chunk, device=dev)
        traced_encode = _trace(encode, (x, zeros(enc_shapes, dev)), "streaming encoder")
        z = traced_encode(x, zeros(enc_shapes, dev))[0]
        traced_decode = _trace(decode, (z, zeros(dec_shapes, dev)), "streaming decoder")
        set_streaming(loaded.model, False)
        try:
            scripted = torch.jit.script(
                StreamingCodec(
                    traced_encode, traced_decode, enc_shapes, dec_shapes, metadata(loaded)
                )
            )
        except Exception as exc:
            raise LyraError(f"export --streaming: cannot script the wrapper: {exc}") from exc
        check_stream(scripted, loaded)
    return scripted


def offline(loaded: LoadedModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The causal model's offline latent and audio for `x` (what the stream must equal)."""
    set_streaming(loaded.model, False)
    with torch.no_grad():
        z = loaded.model.encode(x)[0]
        return z, loaded.model.decode(z)


def _differs(got: torch.Tensor, want: torch.Tensor) -> bool:
    scale = max(1.0, float(want.abs().max()))
    return got.shape != want.shape or float((got - want).abs().max()) > TOLERANCE * scale


def check_stream(exported: Any, loaded: LoadedModel) -> None:
    """Consecutive chunks of several sizes (batch 2) through the export equal the offline pass."""
    multiple = chunk_multiple(loaded.model)
    sizes = [multiple, 3 * multiple, 2 * multiple, 5 * multiple]
    gen = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(2, loaded.channels, sum(sizes), generator=gen).to(loaded.device)
    want_z, want_y = offline(loaded, x)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    with torch.no_grad():
        for method, want in (("encode", want_z), ("forward", want_y)):
            exported.reset()
            fn = getattr(exported, method)
            got = torch.cat([fn(x[..., s : s + n]) for s, n in zip(starts, sizes, strict=True)], -1)
            if _differs(got, want):
                raise LyraError(
                    f"export --streaming: the streamed {method} differs from the model's offline "
                    "causal pass: a layer's computation depends on the chunk length in Python, "
                    "which tracing fixes"
                )
        exported.reset()


def export_streaming_torchscript(loaded: LoadedModel, path: str | Path) -> Path:
    """Write the streaming TorchScript file, with `lyra.json` (description, metadata) inside."""
    path = Path(path)
    scripted = build_streaming_torchscript(loaded)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({**loaded.describe(), "streaming": metadata(loaded)}, indent=2)
    save_torchscript(scripted, path, meta)
    return path


# -- ONNX --------------------------------------------------------------------------------------


def onnx_chunk(loaded: LoadedModel, chunk: int | None) -> int:
    multiple = chunk_multiple(loaded.model)
    if chunk is None:
        return multiple * -(-DEFAULT_CHUNK // multiple)
    if chunk < 1 or chunk % multiple:
        raise LyraError(
            f"export --streaming --chunk-samples {chunk}: a streamed chunk must be a multiple of "
            f"{multiple} samples (the hop of {loaded.hop_length} times the frame multiple "
            f"{loaded.frame_multiple}); give such a chunk"
        )
    return chunk


def export_streaming_onnx(
    loaded: LoadedModel, path: str | Path, chunk: int | None = None
) -> list[Path]:
    """One encode+decode streaming step of `chunk` samples as ONNX, and its JSON description."""
    need_onnx()
    path, chunk = Path(path), onnx_chunk(loaded, chunk)
    dev = loaded.device
    with torch.inference_mode(False), torch.no_grad(), _quiet():
        encode, enc_shapes, decode, dec_shapes = build_steps(loaded, chunk)
        shapes = enc_shapes + dec_shapes
        x = torch.zeros(1, loaded.channels, chunk, device=dev)
        inputs = ["x"] + [f"state_{i}" for i in range(len(shapes))]
        outputs = ["y"] + [f"new_state_{i}" for i in range(len(shapes))]
        path.parent.mkdir(parents=True, exist_ok=True)
        warnings.filterwarnings("ignore", "You are using the legacy", DeprecationWarning)
        try:
            torch.onnx.export(
                FlatStep(encode, decode).eval(),
                (x, *zeros(shapes, dev)),
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamo=False,
            )
        except Exception as exc:
            raise LyraError(f"export --streaming: ONNX cannot take the step: {exc}") from exc
        finally:
            set_streaming(loaded.model, False)
    described = path.with_suffix(".json")
    write_text(
        described, json.dumps(onnx_description(loaded, chunk, shapes), indent=2), "the export"
    )
    return [path, described]


def onnx_description(loaded: LoadedModel, chunk: int, shapes: list[list[int]]) -> dict[str, Any]:
    channels = loaded.channels
    states = [
        {"input": f"state_{i}", "output": f"new_state_{i}", "shape": shape}
        for i, shape in enumerate(shapes)
    ]
    return {
        **loaded.describe(),
        "streaming": metadata(loaded),
        "chunk": chunk,
        "latency_samples": chunk + loaded.delay,
        "input": {"name": "x", "shape": [1, channels, chunk]},
        "output": {"name": "y", "shape": [1, channels, chunk]},
        "states": states,
        "usage": "start every state at zeros of its shape; after each step feed each "
        "new_state_<i> back as state_<i>; zeros again start a new stream",
    }


class StreamingCodec(nn.Module):
    """What the streaming TorchScript file holds; see the module docstring."""

    def __init__(
        self,
        encode_step: nn.Module,
        decode_step: nn.Module,
        encode_shapes: list[list[int]],
        decode_shapes: list[list[int]],
        meta: dict[str, Any],
    ):
        super().__init__()
        self.encode_step, self.decode_step = encode_step, decode_step
        self.encode_shapes, self.decode_shapes = encode_shapes, decode_shapes  # at batch 1
        self.encode_state = torch.jit.Attribute([], list[torch.Tensor])
        self.decode_state = torch.jit.Attribute([], list[torch.Tensor])
        self.sample_rate = self.sr = int(meta["sample_rate"])
        self.in_channels, self.out_channels = int(meta["in_channels"]), int(meta["out_channels"])
        self.channels = self.in_channels
        self.hop_length, self.latent_size = int(meta["hop_length"]), int(meta["latent_size"])
        self.frame_multiple, self.delay = int(meta["frame_multiple"]), int(meta["delay"])
        self.chunk_multiple = int(meta["chunk_multiple"])
        self._methods = ["encode", "decode", "forward"]
        self._attributes = torch.jit.Attribute([], list[str])
        self._register("encode", self.in_channels, 1, self.latent_size, self.hop_length)
        self._register("decode", self.latent_size, self.hop_length, self.out_channels, 1)
        self._register("forward", self.in_channels, 1, self.out_channels, 1)

    def _register(self, name: str, c_in: int, r_in: int, c_out: int, r_out: int) -> None:
        """nn~'s method description: a `<name>_params` buffer and the in/out labels."""
        self.register_buffer(f"{name}_params", torch.tensor([c_in, r_in, c_out, r_out]))
        labels = {1: "(signal) channel", self.hop_length: "(signal) latent"}
        setattr(self, f"{name}_input_labels", [f"{labels[r_in]} {i + 1}" for i in range(c_in)])
        setattr(self, f"{name}_output_labels", [f"{labels[r_out]} {i + 1}" for i in range(c_out)])

    @torch.jit.export
    def get_methods(self) -> list[str]:
        return self._methods

    @torch.jit.export
    def get_attributes(self) -> list[str]:
        return self._attributes

    @torch.jit.export
    def get_sample_rate(self) -> int:
        return self.sample_rate

    @torch.jit.export
    def latency(self, chunk: int) -> int:
        """Samples the output lags the input when streaming chunks of `chunk` samples."""
        return chunk + self.delay

    @torch.jit.export
    def reset(self) -> None:
        """Start a new stream: forget the past."""
        self.encode_state = []
        self.decode_state = []

    def _fresh(
        self, state: list[torch.Tensor], shapes: list[list[int]], x: torch.Tensor
    ) -> list[torch.Tensor]:
        """`state`, or zeros for a new stream (first chunk, new batch size or device)."""
        batch = x.shape[0]
        if len(state) == len(shapes) and (
            len(state) == 0
            or (state[0].shape[0] == shapes[0][0] * batch and state[0].device == x.device)
        ):
            return state
        fresh: list[torch.Tensor] = []
        for shape in shapes:
            size = [shape[0] * batch] + shape[1:]  # noqa: RUF005 (TorchScript)
            fresh.append(torch.zeros(size, dtype=x.dtype, device=x.device))
        return fresh

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Audio [B, in_channels, N] (N a multiple of chunk_multiple) -> latent [B, D, N/hop]."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"encode takes audio [batch, {self.in_channels}, samples], got {x.shape}"
            )
        if x.shape[-1] == 0 or x.shape[-1] % self.chunk_multiple != 0:
            raise ValueError(
                f"a chunk of {x.shape[-1]} samples: streaming takes multiples of "
                f"{self.chunk_multiple} samples (hop {self.hop_length} times frame multiple "
                f"{self.frame_multiple}); buffer the input to such chunks"
            )
        state = self._fresh(self.encode_state, self.encode_shapes, x)
        z, state = self.encode_step(x, state)
        self.encode_state = state
        return z.contiguous()  # the channels-last convs leave it laid out [B, F, D]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent [B, latent_size, F] (F a multiple of frame_multiple) -> audio [B, C, F·hop]."""
        if z.dim() != 3 or z.shape[1] != self.latent_size:
            raise ValueError(
                f"decode takes a latent [batch, {self.latent_size}, frames], got {z.shape}"
            )
        if z.shape[-1] == 0 or z.shape[-1] % self.frame_multiple != 0:
            raise ValueError(
                f"a latent of {z.shape[-1]} frames: streaming takes multiples of "
                f"{self.frame_multiple} frames"
            )
        state = self._fresh(self.decode_state, self.decode_shapes, z)
        y, state = self.decode_step(z, state)
        self.decode_state = state
        return y.contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Audio -> audio, chunk after chunk: `decode(encode(x))`."""
        return self.decode(self.encode(x))
