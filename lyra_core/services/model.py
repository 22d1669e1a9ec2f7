"""A trained model from a run: find its checkpoint, load it for inference, describe it.

A model loads from a run directory (its `checkpoints/best.pt`, else `last.pt`), a checkpoint file,
or a run id of the default tracker (an MLflow run's `lyra.run_dir` tag). The checkpoint is read with
`weights_only=True`; its resolved spec is validated against the live registry before anything is
built, and a component that no loaded plugin provides is reported with the plugins the run was
trained with that are missing now.

A run trained with `training.ema` is loaded with its weights' moving average (the checkpoint's
`ema`) unless `weights="raw"` asks for the trained weights; `describe()` says which it holds.
For inference the model is put in eval mode, its parametrizations (weight norm) are folded into
plain weights, and modules that offer an eager `implementation` (Snake) use it: the fused Snake's
first call compiles for tens of seconds and is no faster without gradients.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn
from torch.nn.utils import parametrize

from lyra_core.context import BuildContext
from lyra_core.discovery import Plugins
from lyra_core.errors import LyraError
from lyra_core.experiment import DEFAULT_TRACKER, ExperimentSpec, default_tracker
from lyra_core.interfaces import AudioModel, Bottleneck, Prior, QuantizingBottleneck
from lyra_core.loader import resolved, validate_data
from lyra_core.services import checkpoint
from lyra_core.services.device import pick_device
from lyra_core.services.rundir import spec_hash

WEIGHTS = ("ema", "raw")  # the moving average (training.ema), the trained weights


# -- finding and loading -----------------------------------------------------------------------


def find_checkpoint(
    source: str | Path, registry: Any = None, tracking_uri: str | None = None
) -> Path:
    """A checkpoint file from a run directory, a checkpoint path or, given the `registry`, a run
    id of the default tracker (`tracking_uri`: its store)."""
    path = Path(source)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        what = "has no checkpoint yet" if (path / "spec.json").is_file() else "is not a Lyra run"
        raise LyraError(f"{path}: {what} (no checkpoints/best.pt or checkpoints/last.pt)")
    if path.is_file():
        return path
    if registry is not None and DEFAULT_TRACKER in registry.names("tracker"):
        tracker = default_tracker(registry, tracking_uri).build(BuildContext(registry=registry))
        if (run_dir := tracker.run_dir(str(source))) is not None:
            return find_checkpoint(run_dir)
    raise LyraError(
        f"{source}: no such run directory or checkpoint file, nor a run id of the "
        f"'{DEFAULT_TRACKER}' tracker"
    )


def plugin_differences(recorded: dict[str, str], plugins: Plugins) -> tuple[list[str], list[str]]:
    """Plugins the run was trained with that are not loaded now, and those whose version changed."""
    now = plugins.versions()
    missing = [
        f"'{name}' from {dist}" for name, dist in sorted(recorded.items()) if name not in now
    ]
    changed = [
        f"'{name}' (trained with {dist}, loaded {now[name]})"
        for name, dist in sorted(recorded.items())
        if name in now and now[name] != dist
    ]
    return missing, changed


def fold_parametrizations(model: nn.Module) -> None:
    """Replace every parametrized tensor (weight norm, ...) by its current value, in place."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def use_eager_implementations(model: nn.Module) -> None:
    """Switch modules that offer an eager `implementation` (e.g. the fused Snake) to it."""
    for module in model.modules():
        if getattr(module, "implementation", None) not in (None, "eager"):
            module.implementation = "eager"


def find_bottleneck(model: nn.Module) -> Bottleneck | None:
    found = [m for m in model.modules() if isinstance(m, Bottleneck)]
    return found[0] if len(found) == 1 else None


@attrs.define(slots=False)
class LoadedModel:
    """A trained model ready for inference, with what its outputs need to be described."""

    model: AudioModel
    spec: ExperimentSpec
    spec_hash: str
    checkpoint: Path
    step: int
    device: torch.device
    registry: Any
    weights: str = "raw"  # which of WEIGHTS the model holds

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sample_rate(self) -> int:
        return self.spec.data.sample_rate

    @property
    def channels(self) -> int:
        return self.spec.data.channels

    @property
    def hop_length(self) -> int:
        return int(self.model.hop_length)

    @property
    def delay(self) -> int:
        """Samples a causal model's output lags its input (0 for most models)."""
        return int(getattr(self.model, "delay", 0))

    @property
    def bottleneck(self) -> Bottleneck:
        found = find_bottleneck(self.model)
        if found is None:
            raise LyraError(f"model '{self.name}': no single Bottleneck module to sample from")
        return found

    @property
    def prior(self) -> Prior | None:
        """The model's latent prior (a `latent_prior` run's), if it has one."""
        found = [m for m in self.model.modules() if isinstance(m, Prior)]
        return found[0] if len(found) == 1 else None

    def sample_latents(
        self,
        count: int,
        frames: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        prompt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`count` latents of `frames` frames: drawn from the model's latent prior, following
        `prompt` [1, D, P] when given (then P + frames frames), else from the bottleneck's own
        frame-wise prior (which cannot continue a prompt)."""
        prior = self.prior
        if prior is None:
            if prompt is not None:
                raise LyraError(
                    f"model '{self.name}' has no latent prior to continue a prompt with; train "
                    "one on this run's latents (a `latent_prior` model, see docs/priors.md) "
                    "and sample from that run"
                )
            return self.bottleneck.sample_prior(count, frames, temperature, generator)
        if prompt is None:
            prompt = torch.zeros(1, self.latent_channels, 0)
        start = prompt.to(self.device).expand(count, -1, -1)
        return prior.generate(start, frames, temperature, generator)

    @property
    def quantizer(self) -> QuantizingBottleneck | None:
        """The bottleneck if it has discrete codes (and the model exposes `features`)."""
        found = find_bottleneck(self.model)
        if isinstance(found, QuantizingBottleneck) and hasattr(self.model, "features"):
            return found
        return None

    @functools.cached_property
    def codes_per_frame(self) -> list[float]:
        """Per codebook, codes sent per latent frame (1 / its stride; a multi-scale quantizer's
        coarse codebooks send fewer), probed through `quantize`."""
        quantizer = self.quantizer
        if quantizer is None:
            raise LyraError(f"model '{self.name}' has no quantizer: it sends no codes")
        frames = int(getattr(quantizer, "frame_multiple", 1))
        audio = torch.zeros(1, self.channels, self.hop_length * self.frame_multiple)
        with torch.inference_mode():
            channels = self.model.features(audio.to(self.device)).shape[1]
            probe = torch.zeros(1, channels, frames, device=self.device)
            _, codes, _ = quantizer.quantize(probe)
        return [c.shape[-1] / frames for c in codes]

    @functools.cached_property
    def _probe(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder's output (latent, terms) for one hop of silence."""
        probe = torch.zeros(1, self.channels, self.hop_length, device=self.device)
        with torch.inference_mode():
            return self.model.encode(probe)

    @property
    def single_vector(self) -> bool:
        """Whether the latent is one vector per example ([B, D]) instead of a time series."""
        return self._probe[0].dim() == 2

    @property
    def latent_channels(self) -> int:
        """D of the latent [B, D, frames] (or [B, D])."""
        return int(self._probe[0].shape[1])

    @property
    def variational(self) -> bool:
        """Whether the latent is variational: the bottleneck reports a "kl" term (a Gaussian
        posterior), so paths between latents are spherical rather than straight."""
        return "kl" in self._probe[1]

    @property
    def frame_multiple(self) -> int:
        """What a latent's frame count must be a multiple of (a multi-scale quantizer's largest
        stride, an attention window): 1 for most models."""
        found = find_bottleneck(self.model)
        own = (getattr(m, "frame_multiple", 1) for m in (self.model, found))
        return math.lcm(*(int(m) for m in own))

    def latent_frames(self, samples: int) -> int:
        """Latent frames that cover `samples` samples: ceil(samples / hop), rounded up to the
        frame multiple (what `sample_prior` and the decoder accept)."""
        if samples < 1:
            raise LyraError(f"need at least one sample of audio, got {samples}")
        multiple = self.frame_multiple
        return math.ceil(samples / (self.hop_length * multiple)) * multiple

    @property
    def run_dir(self) -> Path:
        """The run directory the checkpoint belongs to (`RUN/checkpoints/x.pt`), else its
        folder: where caches made from the model are kept."""
        folder = self.checkpoint.resolve().parent
        if folder.name == "checkpoints" and (folder.parent / "spec.json").is_file():
            return folder.parent
        return folder

    def cache_key(self) -> str:
        """What identifies the checkpoint a cache was made from (a cache with another key is
        refitted)."""
        stat = self.checkpoint.stat()
        return json.dumps(
            {
                "checkpoint": str(self.checkpoint.resolve()),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "step": self.step,
                "spec_hash": self.spec_hash,
                "weights": self.weights,
            },
            sort_keys=True,
        )

    @functools.cached_property
    def weights_digest(self) -> bytes:
        """SHA-256 over the model's weights and buffers: the trained model's identity."""
        digest = hashlib.sha256()
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        return digest.digest()

    def describe(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "channels": self.channels,
            "model": self.name,
            "spec_hash": self.spec_hash,
            "checkpoint": str(self.checkpoint.resolve()),
            "step": self.step,
            "weights": self.weights,
        }


def stored_spec(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's spec as a JSON object (not yet validated)."""
    if not isinstance(state.get("spec"), str) or not isinstance(state.get("model"), dict):
        raise LyraError(f"{path}: the checkpoint has no spec or no model weights")
    try:
        data = json.loads(state["spec"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise LyraError(
            f"{path}: the checkpoint's stored spec is not valid JSON ({exc}); "
            "it was not written by `lyra run`, or it is damaged"
        ) from None
    if not isinstance(data, dict):
        raise LyraError(
            f"{path}: the checkpoint's stored spec is a JSON {type(data).__name__}, not an object"
        )
    return data


def validated_spec(path: Path, state: dict[str, Any], plugins: Plugins) -> ExperimentSpec:
    """The stored spec checked against the live registry, naming plugins the run needs."""
    missing, changed = plugin_differences(state.get("plugins") or {}, plugins)
    try:
        spec: ExperimentSpec = validate_data(
            stored_spec(path, state), plugins.registry, f"{path} (its spec)"
        )
    except LyraError as exc:
        if missing:
            raise LyraError(
                f"{exc}\nthe run was trained with plugin(s) not loaded now: {', '.join(missing)}; "
                "install (or enable) them to use this model (see `lyra plugins`)"
            ) from exc
        raise
    if changed:
        print(
            f"warning: plugin versions differ from training: {', '.join(changed)}", file=sys.stderr
        )
    return spec


def choose_weights(
    path: Path, state: dict[str, Any], weights: str | None = None
) -> tuple[str, dict]:
    """Which weights to load and their state dict: `weights` ('ema' or 'raw'), or by default the
    moving average when the checkpoint has one, else the trained weights."""
    if weights not in (None, *WEIGHTS):
        raise LyraError(f"--weights {weights}: expected one of {', '.join(WEIGHTS)}")
    average = state.get(checkpoint.EMA)
    if weights == "ema" and not isinstance(average, dict):
        raise LyraError(
            f"{path}: --weights ema, but this checkpoint has no moving average of the weights "
            "(its run trained without training.ema); use --weights raw (or leave it out), or "
            "train with training.ema set"
        )
    if weights == "raw" or not isinstance(average, dict):
        return "raw", state["model"]
    return "ema", average


def build_trained(
    path: Path, spec: ExperimentSpec, weights: dict, registry: Any, dev: torch.device
) -> AudioModel:
    """The spec's model with the checkpoint's weights, ready for inference on `dev`."""
    model = spec.model.build(spec.context(registry, str(dev)))
    if not isinstance(model, AudioModel):
        raise LyraError(f"{path}: the model is a {type(model).__name__}, not an AudioModel")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise LyraError(f"{path}: the weights do not fit the spec's model: {exc}") from exc
    model.eval().requires_grad_(False)
    fold_parametrizations(model)
    use_eager_implementations(model)
    return model.to(dev)


def save_model(
    model: nn.Module,
    spec: ExperimentSpec,
    registry: Any,
    run: Path,
    plugins: dict[str, str] | None = None,
    step: int = 0,
) -> Path:
    """Write `model`'s weights with `spec` as `run`/checkpoints/last.pt, a checkpoint
    `load_model` loads like a trained run's (e.g. an untrained model to benchmark or test);
    `plugins` are the versions `lyra_core.discovery.Plugins.versions()` gives."""
    state = {
        "format": checkpoint.FORMAT,
        "model": model.state_dict(),
        "spec": json.dumps(resolved(spec, registry)),
        "plugins": plugins or {},
        "step": step,
    }
    path = run / "checkpoints" / "last.pt"
    checkpoint.save_atomic(state, path)
    return path


def load_model(
    source: str | Path,
    plugins: Plugins,
    device: str = "auto",
    tracking_uri: str | None = None,
    weights: str | None = None,
) -> LoadedModel:
    """Load a trained model for inference (see the module docstring); `weights`: 'ema', 'raw'
    or None (the moving average when the checkpoint has one)."""
    path = find_checkpoint(source, plugins.registry, tracking_uri)
    state = checkpoint.load(path, map_location="cpu")
    spec = validated_spec(path, state, plugins)
    chosen, state_dict = choose_weights(path, state, weights)
    dev = pick_device(device)
    model = build_trained(path, spec, state_dict, plugins.registry, dev)
    step = state.get("step", 0)
    step = step if isinstance(step, int) else 0
    data = stored_spec(path, state)
    return LoadedModel(model, spec, spec_hash(data), path, step, dev, plugins.registry, chosen)
