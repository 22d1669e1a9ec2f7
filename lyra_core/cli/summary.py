"""`lyra summary`: each stage's output shape and parameter count, without training.

The model is built and run on the `meta` device: shapes propagate, nothing is allocated or
computed, so even a 255 M-parameter model is summarised in seconds. Stages are the modules that
run (forward hooks), plus the interface methods a model calls instead of `forward`
(filterbank analysis/synthesis, bottleneck encode/posterior/decoder_input). `ModuleList`s and
`ModuleDict`s are transparent: `encoder.blocks.0` is one level below `encoder`.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import torch
from torch import nn

from lyra_core.cli.common import add_command, add_set, bounded, plugins, seconds
from lyra_core.context import BuildContext
from lyra_core.errors import LyraError
from lyra_core.experiment import ExperimentSpec
from lyra_core.interfaces import AudioModel, ModelOutput
from lyra_core.loader import load_spec

# Methods that models call instead of `forward`, reported as stages when a module has them.
STAGE_METHODS = ("analysis", "synthesis", "posterior", "encode", "decoder_input", "decode")


@attrs.define
class Stage:
    name: str
    depth: int
    params: int
    output: str = "(not run)"


@attrs.define
class Summary:
    title: str
    input_shape: tuple[int, ...]
    stages: list[Stage]
    total_params: int
    trainable_params: int
    latent_shape: str
    output_shape: str
    hop_length: int | None
    parts: list[tuple[str, int]] = attrs.Factory(list)  # top-level submodules' parameters
    length_note: str | None = None  # why the decoder's output and the reconstruction differ

    def format(self) -> str:
        width = max([len("stage")] + [2 * s.depth + len(s.name) for s in self.stages]) + 2
        out_width = max([len("output")] + [len(s.output) for s in self.stages]) + 2
        lines = [
            f"{self.title}: input {list(self.input_shape)}",
            f"{'stage':<{width}}{'output':<{out_width}}{'params':>14}",
        ]
        for s in self.stages:
            name = "  " * s.depth + s.name
            params = f"{s.params:,}" if s.params else "-"
            lines.append(f"{name:<{width}}{s.output:<{out_width}}{params:>14}")
        lines += [
            f"latent: {self.latent_shape}",
            f"reconstruction: {self.output_shape}",
        ]
        if self.hop_length:
            lines.append(f"hop length: {self.hop_length} samples per latent frame")
        if self.length_note:
            lines.append(self.length_note)
        if self.parts:
            lines.append("parameters by part: " + ", ".join(f"{n} {c:,}" for n, c in self.parts))
        lines += [
            f"total parameters: {self.total_params:,}",
            f"trainable parameters: {self.trainable_params:,}",
        ]
        return "\n".join(lines)


def describe(value: Any) -> str:
    """A short shape description of a stage's output."""
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, ModelOutput):
        return describe(value.reconstruction)
    if isinstance(value, tuple | list):
        shapes = [describe(v) for v in value if isinstance(v, torch.Tensor | tuple | list)]
        return ", ".join(shapes) if shapes else type(value).__name__
    return type(value).__name__


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _stages(model: nn.Module, max_depth: int) -> Iterator[tuple[str, int, nn.Module]]:
    """(name, depth, module) for submodules down to `max_depth`, containers transparent."""

    def walk(module: nn.Module, prefix: str, depth: int) -> Iterator[tuple[str, int, nn.Module]]:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.ModuleList | nn.ModuleDict):
                yield from walk(child, full, depth)
                continue
            yield full, depth, child
            if depth < max_depth:
                yield from walk(child, full, depth + 1)

    yield from walk(model, "", 1)


class Recorder:
    """Records each stage's output while a model runs: forward hooks on the stages' modules,
    and wrappers around the interface methods that models call instead of `forward`."""

    def __init__(self) -> None:
        self.order: list[Stage] = []
        self.seen: dict[object, Stage] = {}
        self.handles: list[Any] = []

    def stage_for(self, key: object, name: str, depth: int, params: int) -> Stage:
        # A stage is listed where it first starts running, so a parent precedes its children.
        if key not in self.seen:
            self.seen[key] = Stage(name, depth, params)
            self.order.append(self.seen[key])
        return self.seen[key]

    def wrap_method(self, owner: nn.Module, method: str, name: str, depth: int) -> None:
        original: Callable[..., Any] = getattr(owner, method)

        @functools.wraps(original)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            label = f"{name}.{method}" if name else method
            stage = self.stage_for((id(owner), method), label, depth, 0)
            result = original(*args, **kwargs)
            stage.output = describe(result)
            return result

        setattr(owner, method, recorded)

    def add_hooks(self, name: str, depth: int, module: nn.Module) -> None:
        def pre(mod: nn.Module, _: Any) -> None:
            self.stage_for(id(mod), name, depth, _count(mod))

        def post(mod: nn.Module, _: Any, output: Any) -> None:
            self.seen[id(mod)].output = describe(output)

        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))

    def attach(self, model: nn.Module, max_depth: int) -> None:
        if isinstance(model, AudioModel):
            for method in ("encode", "decode"):
                self.wrap_method(model, method, "", 0)
        for name, depth, module in _stages(model, max_depth):
            self.add_hooks(name, depth, module)
            for method in STAGE_METHODS:
                if callable(getattr(type(module), method, None)):
                    self.wrap_method(module, method, name, depth)

    def detach(self) -> None:
        for h in self.handles:
            h.remove()


def run_on_meta(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[Any, Any]:
    """(latent or None, output) of one pass over a meta tensor of `input_shape`."""
    x = torch.zeros(input_shape, device="meta")
    try:
        # Shapes only: never compile (a plugin's torch.compile would compile for meta tensors).
        with torch.no_grad(), torch.compiler.set_stance("force_eager"):
            if isinstance(model, AudioModel):
                latent, _ = model.encode(x)
                return latent, model.decode(latent, input_shape[-1])
            return None, model(x)
    except LyraError:
        raise
    except (RuntimeError, ValueError, IndexError) as exc:
        raise LyraError(f"the model failed on an input {list(input_shape)}: {exc}") from exc


def summarize(
    model: nn.Module, input_shape: tuple[int, ...], max_depth: int = 2, title: str = "model"
) -> Summary:
    """Run `model` once on a meta tensor of `input_shape`, recording every stage's output."""
    recorder = Recorder()
    recorder.attach(model, max_depth)
    try:
        latent, output = run_on_meta(model, input_shape)
    finally:
        recorder.detach()
    return Summary(
        title=title,
        input_shape=tuple(input_shape),
        stages=recorder.order,
        total_params=_count(model),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        latent_shape=describe(latent) if latent is not None else "-",
        output_shape=describe(output),
        hop_length=getattr(model, "hop_length", None),
        parts=[(name, _count(child)) for name, child in model.named_children()],
        length_note=length_note(model, input_shape[-1], latent),
    )


def length_note(model: nn.Module, length: int, latent: Any) -> str | None:
    """Why the decoder's output (frames · hop samples) and the reconstruction (the input's length)
    differ, when they do: the reconstruction is padded or cropped to the input's length."""
    hop = getattr(model, "hop_length", None)
    if not hop or not isinstance(latent, torch.Tensor) or latent.dim() != 3:
        return None
    frames = latent.shape[-1]
    decoded = frames * hop
    if decoded == length:
        return None
    fit = (
        f"padded with {length - decoded:,} samples"
        if decoded < length
        else f"cropped by {decoded - length:,} samples"
    )
    return (
        f"length: the decoder gives {frames} frames x {hop:,} = {decoded:,} samples; the "
        f"reconstruction is that {fit} to the input's {length:,} ({length:,} is not a multiple "
        f"of the hop)"
    )


def build_on_meta(spec: ExperimentSpec, ctx: BuildContext) -> nn.Module:
    """Build the spec's model without allocating its weights (every tensor on `meta`)."""
    with torch.device("meta"):
        model = spec.model.build(ctx)
    if not isinstance(model, nn.Module):
        raise LyraError(f"the model built a {type(model).__name__}, not a torch module")
    return model.to("meta").eval()


def summarize_spec(
    spec: ExperimentSpec,
    registry: Any,
    seconds: float | None = None,
    max_depth: int = 2,
    title: str = "model",
) -> Summary:
    """Build the spec's model on `meta` and summarise it on [1, channels, segment or seconds]."""
    data = spec.data
    ctx = spec.context(registry)
    if seconds is not None and seconds <= 0:
        raise LyraError(f"--seconds must be positive, got {seconds}")
    length = data.segment_length if seconds is None else max(1, round(seconds * data.sample_rate))
    model = build_on_meta(spec, ctx)
    return summarize(model, (1, data.channels, length), max_depth=max_depth, title=title)


def summary_command(args: argparse.Namespace) -> int:
    reg = plugins(args).registry
    spec = load_spec(args.spec, reg, args.set)
    print(summarize_spec(spec, reg, args.seconds, args.depth, title=args.spec).format())
    return 0


def add_parsers(sub: Any) -> None:
    text = "each model stage's output shape and parameter count"
    p = add_command(sub, "summary", summary_command, help=text)
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--seconds", type=seconds, help="input length (default: the segment length)")
    p.add_argument(
        "--depth", type=bounded(int, 0, 64), default=2, help="stage nesting to show (default: 2)"
    )
    add_set(p)
