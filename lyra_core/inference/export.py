"""`lyra export`: a trained model as one TorchScript file that needs torch and nothing else.

The inference model (eval, weight norm folded, eager Snake; see `lyra_core.inference`) is split
at its stages: `encode_core` (filterbank analysis -> encoder -> bottleneck mean) and `decode_core`
(bottleneck's decoder input -> decoder -> filterbank synthesis) are traced, so every plugin's
Python (shape checks, precision contexts) runs once at export and PQMF's filters are stored in
the file. A scripted wrapper around them pads and crops for any input length, as the model does,
and offers `encode(x)`, `decode(z, length)` and `forward(x)`. The export is checked against the
Lyra model at two other lengths before it is written.

This works for models made of `filterbank` (or None), `encoder`, `bottleneck` and `decoder`
stages with a `pad` mode, like the built-in `autoencoder`; other models get a clear error.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lyra_core.errors import LyraError
from lyra_core.services.atomic import write_bytes
from lyra_core.services.model import LoadedModel

STAGES = ("encoder", "bottleneck", "decoder")
TOLERANCE = 1e-4


class EncodeCore(nn.Module):
    """Padded audio [B, C, frames·hop] -> latent (the bottleneck's eval-mode output)."""

    def __init__(self, filterbank: nn.Module | None, encoder: nn.Module, bottleneck: nn.Module):
        super().__init__()
        self.filterbank, self.encoder, self.bottleneck = filterbank, encoder, bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.filterbank is not None:
            x = self.filterbank.analysis(x)
        return self.bottleneck.encode(self.encoder(x))[0]


class DecodeCore(nn.Module):
    """Latent -> audio [B, C, frames·hop]; `frames_like` carries the frame count in its length."""

    def __init__(self, filterbank: nn.Module | None, decoder: nn.Module, bottleneck: nn.Module):
        super().__init__()
        self.filterbank, self.decoder, self.bottleneck = filterbank, decoder, bottleneck

    def forward(self, z: torch.Tensor, frames_like: torch.Tensor) -> torch.Tensor:
        y = self.decoder(self.bottleneck.decoder_input(z, frames_like.shape[-1]))
        if self.filterbank is not None:
            y = self.filterbank.synthesis(y)
        return y


class ExportedCodec(nn.Module):
    """What the TorchScript file holds: any-length `encode`, `decode` and `forward`."""

    def __init__(self, encode_core: nn.Module, decode_core: nn.Module, loaded: LoadedModel):
        super().__init__()
        model = loaded.model
        self.encode_core, self.decode_core = encode_core, decode_core
        self.sample_rate, self.channels = loaded.sample_rate, loaded.channels
        self.hop_length = loaded.hop_length
        self.bands = int(model.bands)
        self.pad_to_hop = model.pad == "hop"
        self.default_length = int(getattr(model, "default_length", loaded.spec.data.segment_length))

    def padded_length(self, length: int) -> int:
        """As the autoencoder pads: to a multiple of hop ("hop"), else of bands."""
        if self.pad_to_hop or length <= self.hop_length:
            return (length + self.hop_length - 1) // self.hop_length * self.hop_length
        return (length + self.bands - 1) // self.bands * self.bands

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Audio [B, channels, T] at sample_rate -> latent."""
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError("encode expects audio [batch, channels, samples]")
        length = x.shape[-1]
        return self.encode_core(F.pad(x, [0, self.padded_length(length) - length]))

    @torch.jit.export
    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Latent -> audio [B, channels, length] (None: the decoder's own length)."""
        if length is not None:
            frames = self.padded_length(length) // self.hop_length
        elif z.dim() == 3:
            frames = z.shape[-1]
        else:
            frames = self.padded_length(self.default_length) // self.hop_length
        y = self.decode_core(z, torch.empty(frames))
        if length is None:
            return y
        if y.shape[-1] >= length:
            return y[..., :length]
        return F.pad(y, [0, length - y.shape[-1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x.shape[-1])


def _stages(loaded: LoadedModel) -> tuple[nn.Module | None, nn.Module, nn.Module, nn.Module]:
    model = loaded.model
    absent = [s for s in (*STAGES, "filterbank", "pad", "bands") if not hasattr(model, s)]
    if absent:
        raise LyraError(
            f"export: model '{loaded.name}' ({type(model).__name__}) has no "
            f"{', '.join(absent)}; export handles filterbank/encoder/bottleneck/decoder models "
            "such as 'autoencoder'"
        )
    return model.filterbank, model.encoder, model.bottleneck, model.decoder


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence tracing's warnings and torch.jit's deprecation notices (TorchScript still works)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        yield


def _trace(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], stage: str
) -> torch.jit.ScriptModule:
    try:
        return torch.jit.trace(module, inputs, check_trace=False)
    except Exception as exc:
        raise LyraError(f"export: cannot trace the {stage}: {type(exc).__name__}: {exc}") from exc


def build_torchscript(loaded: LoadedModel) -> torch.jit.ScriptModule:
    """The scripted, checked module for `loaded` (not yet saved)."""
    filterbank, encoder, bottleneck, decoder = _stages(loaded)
    hop, dev = loaded.hop_length, loaded.device
    frames = 16
    x = torch.randn(1, loaded.channels, frames * hop, generator=torch.Generator().manual_seed(0))
    x = x.to(dev) * 0.1
    with torch.inference_mode(False), torch.no_grad(), _quiet():
        encode_core = _trace(EncodeCore(filterbank, encoder, bottleneck).eval(), (x,), "encoder")
        z = encode_core(x)
        decode_core = _trace(
            DecodeCore(filterbank, decoder, bottleneck).eval(),
            (z, torch.empty(frames, device=dev)),
            "decoder",
        )
        try:
            scripted = torch.jit.script(ExportedCodec(encode_core, decode_core, loaded))
        except Exception as exc:
            raise LyraError(f"export: cannot script the wrapper: {exc}") from exc
        check(scripted, loaded, [frames * hop + hop * 3 + 7, 3 * frames * hop + 5])
    return scripted


def check(exported: nn.Module, loaded: LoadedModel, lengths: list[int]) -> None:
    """The export matches the Lyra model (encode and forward) at lengths it was not traced at."""
    gen = torch.Generator().manual_seed(1)
    for length in lengths:
        x = 0.1 * torch.randn(2, loaded.channels, length, generator=gen).to(loaded.device)
        with torch.no_grad():
            want_z = loaded.model.encode(x)[0]
            want_y = loaded.model.decode(want_z, length)
            got_z, got_y = exported.encode(x), exported(x)
        for what, got, want in (("latent", got_z, want_z), ("audio", got_y, want_y)):
            scale = max(1.0, float(want.abs().max()))
            if got.shape != want.shape or float((got - want).abs().max()) > TOLERANCE * scale:
                raise LyraError(
                    f"export: the traced model's {what} differs from the model's at length "
                    f"{length} (shape {list(got.shape)} vs {list(want.shape)}): a stage's "
                    "computation depends on the input length in Python, which tracing fixes"
                )


def export_torchscript(loaded: LoadedModel, path: str | Path) -> Path:
    """Write the TorchScript file, with the model's description as `lyra.json` inside."""
    path = Path(path)
    scripted = build_torchscript(loaded)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torchscript(scripted, path, json.dumps(loaded.describe(), indent=2))
    return path


def save_torchscript(scripted: torch.jit.ScriptModule, path: Path, meta: str) -> None:
    """`scripted` as `path` with `meta` as `lyra.json` inside, written whole; rendered in memory
    first (torch's own file writer aborts the process when the disk fills)."""
    buffer = io.BytesIO()
    with _quiet():
        torch.jit.save(scripted, buffer, _extra_files={"lyra.json": meta})
    write_bytes(path, buffer.getvalue(), "the export")


def need_onnx() -> None:
    """Refuse an ONNX export, saying what to install, when the onnx package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise LyraError(
            "export --format onnx needs the 'onnx' package, which is not installed "
            "(pip install onnx); --format torchscript needs nothing else"
        ) from exc


def export_onnx(loaded: LoadedModel, path: str | Path) -> list[Path]:
    """`<stem>.encoder.onnx` and `<stem>.decoder.onnx`, with a dynamic time axis (needs onnx)."""
    need_onnx()
    filterbank, encoder, bottleneck, decoder = _stages(loaded)
    hop, dev, path = loaded.hop_length, loaded.device, Path(path)
    x = torch.zeros(1, loaded.channels, 16 * hop, device=dev)
    with torch.inference_mode(False), torch.no_grad():
        z = EncodeCore(filterbank, encoder, bottleneck)(x)
        parts = {
            "encoder": (EncodeCore(filterbank, encoder, bottleneck), (x,), ["audio"], ["latent"]),
            "decoder": (
                DecodeCore(filterbank, decoder, bottleneck),
                (z, torch.empty(16, device=dev)),
                ["latent", "frames_like"],
                ["audio"],
            ),
        }
        written = []
        for name, (module, args, inputs, outputs) in parts.items():
            target = path.with_suffix(f".{name}.onnx")
            axes = {n: {args[i].dim() - 1: "time"} for i, n in enumerate(inputs)}
            axes[outputs[0]] = {2: "time"} if name == "decoder" or z.dim() == 3 else {}
            try:
                torch.onnx.export(
                    module.eval(),
                    args,
                    str(target),
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_axes=axes,
                    dynamo=False,
                )
            except Exception as exc:
                raise LyraError(
                    f"export: ONNX cannot take the {name} path "
                    f"({', '.join(type(m).__name__ for m in module.children())}): {exc}"
                ) from exc
            written.append(target)
    return written
