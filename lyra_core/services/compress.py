"""`.lyra` files: a model's latent, quantized, entropy-coded with a range coder, and back.

What is quantized:
- a continuous latent is rounded on a uniform grid per dimension: symbol k of dimension d stands
  for mean_d + k·step·std_d, mean and std those of the run's training latents; the step is the
  operating point (`step`, in standard deviations: smaller sounds closer and costs more bits;
  `step_for_kbps` finds the step whose file meets a bitrate). Values further out than the
  training latents reached (with a 25% margin) are clamped to the outermost symbol;
- a bottleneck trained for its rate (`integer_latent`, e.g. `entropy_bottleneck`) is already
  rounded to integers: step 1 in its own units, fixed by training;
- a quantizer's codes are sent as they are, a column per frame of its coarsest codebook (a
  multi-scale quantizer's codebook at r times that rate is r rows: `codes_rows`).

The symbols are range-coded (constriction) with a registered entropy model (`entropy_model`
kind, `plugins/entropy.py`) fitted to up to `MAX_FIT_EXAMPLES` of the run's training examples.
The fit (the grid and the model's tables) is cached in `RUN/compress/NAME.npz` (plain arrays,
read without pickle) and made again when the checkpoint changes. `lyra_core.services.bitstream`
holds the file layout.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import attrs
import constriction
import numpy as np
import torch

from lyra_core.errors import LyraError
from lyra_core.interfaces import EntropyModel, SymbolSpace
from lyra_core.services.atomic import atomic_write
from lyra_core.services.bitstream import (
    CODES,
    GRID,
    Header,
    Reader,
    chunk_bytes,
    read_chunks,
    read_header,
    short_id,
)
from lyra_core.services.chunking import Chunking, decode_latent, encode_audio, encode_codes
from lyra_core.services.model import LoadedModel

DEFAULT_ENTROPY_MODEL = "factorized"
DEFAULT_STEP = 0.2  # standard deviations: within a few % of 8-bit quality at a third of its rate
STEP_RANGE = (1e-3, 64.0)
MARGIN = 1.25  # the grid reaches this far beyond the largest training value
MAX_SYMBOLS = 1 << 14
MAX_FIT_EXAMPLES = 256
CHUNK_SECONDS = 3.0  # audio per chunk, each with its own CRC: a damaged file names its chunk


@attrs.frozen
class Grid:
    """A continuous latent's uniform grid: per dimension the training mean and standard
    deviation; `reach` the largest |normalized| training value; `integer`: already rounded by
    the model (step 1, no normalization)."""

    mean: np.ndarray
    std: np.ndarray
    reach: float
    integer: bool = False

    @classmethod
    def fit(cls, latents: list[np.ndarray], integer: bool) -> Grid:
        rows = np.concatenate(latents, axis=-1).astype(np.float64)
        if integer:
            zeros = np.zeros(rows.shape[0])
            return cls(zeros, zeros + 1.0, float(np.abs(rows).max(initial=1.0)), True)
        mean, std = rows.mean(axis=-1), np.maximum(rows.std(axis=-1), 1e-6)
        reach = float(np.abs((rows - mean[:, None]) / std[:, None]).max(initial=1.0))
        return cls(mean, std, reach)

    def half(self, step: float) -> int:
        return math.ceil(self.reach * MARGIN / step)

    def space(self, step: float) -> SymbolSpace:
        half = self.half(step)
        size = 2 * half + 1
        if size > MAX_SYMBOLS:
            raise LyraError(
                f"step {step:g}: {size:,} symbols per value, more than {MAX_SYMBOLS:,}; "
                f"give a step of at least {2 * self.reach * MARGIN / MAX_SYMBOLS:.2g}"
            )
        k = np.arange(size + 1) - half - 0.5
        edges = self.mean[:, None] + self.std[:, None] * step * k[None]
        edges[:, 0], edges[:, -1] = -np.inf, np.inf
        return SymbolSpace(len(self.mean), size, edges)

    def symbols(self, z: np.ndarray, step: float) -> np.ndarray:
        half = self.half(step)
        k = np.rint((z - self.mean[:, None]) / (self.std[:, None] * step))
        return (np.clip(k, -half, half) + half).astype(np.int32)

    def values(self, symbols: np.ndarray, step: float) -> np.ndarray:
        k = symbols.astype(np.float64) - self.half(step)
        return (self.mean[:, None] + self.std[:, None] * step * k).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "grid.mean": self.mean,
            "grid.std": self.std,
            "grid.reach": np.array(self.reach),
            "grid.integer": np.array(self.integer),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Grid:
        return cls(
            state["grid.mean"],
            state["grid.std"],
            float(state["grid.reach"]),
            bool(state["grid.integer"]),
        )


@attrs.define
class Codec:
    """A loaded model with a fitted entropy model: audio to `.lyra` bytes and back."""

    loaded: LoadedModel
    name: str
    entropy: EntropyModel
    grid: Grid | None  # None: the model's codes are sent
    codebooks: int = 0  # rows of codes (when grid is None)
    chunking: Chunking = attrs.field(factory=Chunking)

    # -- what is sent ------------------------------------------------------------------------

    @property
    def fixed(self) -> bool:
        """Whether training fixed the operating point (codes, a latent trained for its rate)."""
        return self.grid is None or self.grid.integer

    @property
    def default_step(self) -> float:
        return 1.0 if self.fixed else DEFAULT_STEP

    def refuse_step(self) -> None:
        what = "codes" if self.grid is None else "a latent trained for its rate"
        raise LyraError(
            f"--step/--kbps: model '{self.loaded.name}' sends {what}, whose operating point "
            "training fixed; leave --step and --kbps out"
        )

    def check_step(self, step: float) -> float:
        if self.fixed:
            if step != 1.0:
                self.refuse_step()
            return step
        if not STEP_RANGE[0] <= step <= STEP_RANGE[1]:
            raise LyraError(f"--step {step:g}: give {STEP_RANGE[0]:g} to {STEP_RANGE[1]:g}")
        return float(np.float32(step))  # as the header stores it

    def space(self, step: float) -> SymbolSpace:
        if self.grid is not None:
            return self.grid.space(step)
        quantizer = self.loaded.quantizer
        assert quantizer is not None
        return SymbolSpace(self.codebooks, quantizer.codebook_size)

    def frames(self, length: int) -> int:
        """Latent frames a file of `length` samples is sent as."""
        frames = math.ceil((length + self.loaded.delay) / self.loaded.hop_length)
        if self.grid is None:
            return self.loaded.latent_frames(frames * self.loaded.hop_length)
        return frames

    def columns(self, length: int) -> int:
        """Columns of symbols (frames of the coarsest codebook) a file of `length` samples is."""
        if self.grid is None:
            return round(self.frames(length) * min(self.loaded.codes_per_frame))
        return self.frames(length)

    def symbols(self, audio: torch.Tensor, step: float) -> np.ndarray:
        """Audio [1, C, T] as symbols [rows, columns]."""
        if self.grid is None:
            _, codes = encode_codes(self.loaded, audio, self.chunking)
            return codes_rows([c[0].numpy() for c in codes])
        z = encode_audio(self.loaded, audio, self.chunking)[0].numpy()
        return self.grid.symbols(z, step)

    def latent(self, symbols: np.ndarray, step: float) -> torch.Tensor:
        """Symbols [rows, frames] as the latent [1, D, frames] the decoder takes."""
        if self.grid is not None:
            return torch.from_numpy(self.grid.values(symbols, step))[None]
        quantizer = self.loaded.quantizer
        assert quantizer is not None
        rows = rows_codes(symbols, self.loaded.codes_per_frame)
        codes = [torch.from_numpy(r.astype(np.int64))[None].to(self.loaded.device) for r in rows]
        with torch.inference_mode():
            return quantizer.dequantize(codes).cpu()

    def decode_symbols(self, symbols: np.ndarray, step: float, length: int) -> torch.Tensor:
        """The audio [1, C, length] of quantized symbols, decoded in process."""
        z = self.latent(symbols, step)[..., : self.frames(length)]
        return decode_latent(self.loaded, z, length, self.chunking)

    # -- the file ----------------------------------------------------------------------------

    def header(self, length: int, step: float) -> Header:
        return Header(
            spec_id=bytes.fromhex(self.loaded.spec_hash)[:4],
            model_id=self.loaded.weights_digest[:4],
            sample_rate=self.loaded.sample_rate,
            channels=self.loaded.channels,
            length=length,
            chunk_frames=self.chunk_frames,
            quantization=CODES if self.grid is None else GRID,
            step=step,
            entropy_name=short_id(self.name, 2),
            entropy_state=self.state_id,
        )

    @property
    def chunk_frames(self) -> int:
        """Columns of symbols per chunk: about `CHUNK_SECONDS` of audio."""
        per_second = self.loaded.sample_rate / self.loaded.hop_length
        if self.grid is None:
            per_second *= min(self.loaded.codes_per_frame)
        return max(1, math.ceil(CHUNK_SECONDS * per_second))

    @property
    def state_id(self) -> bytes:
        return short_id(state_bytes(self.fit_state()))

    def fit_state(self) -> dict[str, np.ndarray]:
        grid = (
            self.grid.state() if self.grid is not None else {"codes.rows": np.array(self.codebooks)}
        )
        return grid | {f"entropy.{k}": v for k, v in self.entropy.state().items()}

    def encode(self, audio: torch.Tensor, step: float | None = None) -> bytes:
        """Audio [1, C, T] as the bytes of a `.lyra` file."""
        step = self.check_step(self.default_step if step is None else step)
        return self.encode_symbols(self.symbols(audio, step), audio.shape[-1], step)

    def encode_symbols(self, symbols: np.ndarray, length: int, step: float) -> bytes:
        out = [self.header(length, step).to_bytes()]
        space = self.space(step)
        coder = ChunkCoder(self, space, step)
        for start in range(0, symbols.shape[1], self.chunk_frames):
            out.append(chunk_bytes(coder.encode(symbols, start, start + self.chunk_frames)))
        return b"".join(out)

    def decode(self, data: bytes | BinaryIO, name: str) -> torch.Tensor:
        """A `.lyra` file's audio [1, C, length]."""
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        reader = Reader(stream, name)
        header = read_header(reader)
        self.check(header, name)
        step = header.step if header.quantization == GRID else 1.0
        frames = self.columns(header.length)
        space = self.space(step)
        coder = ChunkCoder(self, space, step)
        rows = np.zeros((space.rows, frames), dtype=np.int32)
        count = math.ceil(frames / header.chunk_frames)
        for i, words in enumerate(read_chunks(reader, count)):
            start = i * header.chunk_frames
            coder.decode(words, rows, start, min(frames, start + header.chunk_frames))
        return self.decode_symbols(rows, step, header.length)

    def check(self, header: Header, name: str) -> None:
        """Refuse a file this codec cannot decode, naming the model that made it and this one."""
        mine = self.header(header.length, header.step)
        if (header.spec_id, header.model_id) != (mine.spec_id, mine.model_id):
            raise LyraError(
                f"{name}: encoded by another model (spec {header.spec_id.hex()}, weights "
                f"{header.model_id.hex()}), not by this run's '{self.loaded.name}' (spec "
                f"{mine.spec_id.hex()}, weights {mine.model_id.hex()}): decode it with the run "
                "that encoded it"
            )
        if header.entropy_state != mine.entropy_state or header.quantization != mine.quantization:
            raise LyraError(
                f"{name}: coded with entropy model '{self.name}' fitted differently from this "
                f"run's ({header.entropy_state.hex()}, here {mine.entropy_state.hex()}): its "
                f"cache in {self.loaded.run_dir / 'compress'} was refitted or replaced"
            )
        if (header.sample_rate, header.channels) != (mine.sample_rate, mine.channels):
            raise LyraError(f"{name}: the header's sample rate or channels do not fit the model")


class ChunkCoder:
    """Range coding of the symbols of a chunk of frames, one codebook row or frame at a time."""

    def __init__(self, codec: Codec, space: SymbolSpace, step: float):
        self.codec, self.space, self.step = codec, space, step
        self.entropy = codec.entropy
        self.family = constriction.stream.model.Categorical(perfect=False)
        if not self.entropy.conditional:
            tables = self.entropy.tables(space)
            self.models = [constriction.stream.model.Categorical(t, perfect=False) for t in tables]

    def frame_tables(self, symbols: np.ndarray, t: int) -> np.ndarray:
        """Frame t's tables from the frames before it (those the model looks at)."""
        first = max(0, t - self.entropy.context) if self.entropy.context else 0
        past = self.codec.latent(symbols[:, first:t], self.step)[0]
        return self.entropy.frame_tables(past.to(self.codec.loaded.device), self.space)

    def encode(self, symbols: np.ndarray, start: int, end: int) -> np.ndarray:
        encoder = constriction.stream.queue.RangeEncoder()
        if self.entropy.conditional:
            for t in range(start, min(end, symbols.shape[1])):
                encoder.encode(symbols[:, t], self.family, self.frame_tables(symbols, t))
        else:
            for row, model in zip(symbols, self.models, strict=True):
                encoder.encode(np.ascontiguousarray(row[start:end]), model)
        return encoder.get_compressed()

    def decode(self, words: np.ndarray, rows: np.ndarray, start: int, end: int) -> None:
        decoder = constriction.stream.queue.RangeDecoder(words)
        if self.entropy.conditional:
            for t in range(start, end):
                rows[:, t] = decoder.decode(self.family, self.frame_tables(rows, t))
        else:
            for row, model in zip(rows, self.models, strict=True):
                row[start:end] = decoder.decode(model, end - start)


def codes_rows(codes: list[np.ndarray]) -> np.ndarray:
    """Codes [T_i] per codebook as symbol rows [rows, columns], a column per frame of the
    coarsest codebook: a codebook at r times its rate (a multi-scale quantizer's finer ones)
    is r rows, row p holding its codes p, p + r, p + 2r, ..."""
    columns = min(c.shape[-1] for c in codes)
    return np.concatenate([c.reshape(columns, -1).T for c in codes]).astype(np.int32)


def rows_codes(rows: np.ndarray, codes_per_frame: list[float]) -> list[np.ndarray]:
    """The inverse of `codes_rows`: each codebook's codes [T_i] from the symbol rows."""
    slowest = min(codes_per_frame)
    counts = [round(rate / slowest) for rate in codes_per_frame]
    return [block.T.reshape(-1) for block in np.split(rows, np.cumsum(counts)[:-1])]


def state_bytes(state: dict[str, np.ndarray]) -> bytes:
    return b"".join(k.encode() + np.ascontiguousarray(state[k]).tobytes() for k in sorted(state))


def cross_entropy_bits(codec: Codec, symbols: np.ndarray, step: float) -> float:
    """−Σ log2 p of the symbols under the tables the coder uses (static models only)."""
    tables = codec.entropy.tables(codec.space(step))
    picked = np.take_along_axis(tables, symbols.astype(np.int64), axis=1)
    return float(-np.log2(picked).sum())


# -- fitting to the run's training latents, cached with the run ------------------------------------


def open_codec(
    loaded: LoadedModel,
    name: str = DEFAULT_ENTROPY_MODEL,
    chunking: Chunking | None = None,
    refit: bool = False,
    log: Callable[[str], None] = print,
) -> Codec:
    """`loaded` with the registered entropy model `name`, fitted to the run's training latents
    (read from `RUN/compress/NAME.npz` when it was fitted to this checkpoint)."""
    chunking = chunking or Chunking()
    spec = loaded.registry.get("entropy_model", name).spec
    entropy = spec().build(loaded.spec.context(loaded.registry, str(loaded.device)))
    entropy.bind(loaded.model)
    cache = loaded.run_dir / "compress" / f"{name}.npz"
    key = loaded.cache_key()
    state = None if refit else read_fit(cache, key)
    if state is None:
        state = fit(loaded, entropy, chunking, log)
        write_fit(cache, key, state)
        log(f"fitted entropy model '{name}' to the run's training latents: {cache}")
    entropy.load_state({k[8:]: v for k, v in state.items() if k.startswith("entropy.")})
    grid = Grid.from_state(state) if "grid.mean" in state else None
    rows = int(state.get("codes.rows", 0))
    return Codec(loaded, name, entropy, grid, rows, chunking)


def training_latents(loaded: LoadedModel, chunking: Chunking) -> list[np.ndarray]:
    """Up to `MAX_FIT_EXAMPLES` of the run's training examples, encoded: [D, T] latents, or
    codes [codebooks, T] for a quantizing model."""
    d = loaded.spec.data
    dataset = d.dataset.build(loaded.spec.context(loaded.registry), "train")
    count = min(len(dataset), MAX_FIT_EXAMPLES)
    if count < 1:
        raise LyraError(f"model '{loaded.name}': its training split is empty: nothing to fit to")
    found = []
    for start in range(0, count, d.batch_size):
        batch = torch.stack([dataset[i] for i in range(start, min(count, start + d.batch_size))])
        if loaded.quantizer is not None:
            _, codes = encode_codes(loaded, batch.float(), chunking)
            found += [codes_rows([c[i].numpy() for c in codes]) for i in range(len(batch))]
        else:
            found += list(encode_audio(loaded, batch.float(), chunking).numpy())
    return found


def fit(
    loaded: LoadedModel, entropy: EntropyModel, chunking: Chunking, log: Callable[[str], None]
) -> dict[str, np.ndarray]:
    if loaded.single_vector:
        raise LyraError(
            f"model '{loaded.name}' has a single-vector latent: .lyra files hold latent "
            "sequences (frames over time)"
        )
    log(f"fitting the entropy model to up to {MAX_FIT_EXAMPLES} training examples (once)...")
    latents = training_latents(loaded, chunking)
    if loaded.quantizer is not None:
        space = SymbolSpace(latents[0].shape[0], loaded.quantizer.codebook_size)
        entropy.fit(latents, space)
        state = {"codes.rows": np.array(space.rows)}
    else:
        integer = bool(getattr(loaded.bottleneck, "integer_latent", False))
        grid = Grid.fit(latents, integer)
        entropy.fit(latents, grid.space(1.0 if integer else DEFAULT_STEP))
        state = grid.state()
    return state | {f"entropy.{k}": np.asarray(v) for k, v in entropy.state().items()}


def read_fit(cache: Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached fit if it was made from the checkpoint `key` names; None otherwise."""
    try:
        with np.load(cache, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):  # missing, damaged or foreign: fitted again
        return None
    if str(state.pop("key", "")) != key:
        return None
    return state


def write_fit(cache: Path, key: str, state: dict[str, np.ndarray]) -> None:
    with atomic_write(cache, what="the entropy model's fit") as f:
        np.savez(f, key=np.array(key), **state)


# -- choosing the operating point ------------------------------------------------------------------


def step_for_kbps(codec: Codec, audio: torch.Tensor, kbps: float, name: str) -> float:
    """The finest step whose `.lyra` file of `audio` spends at most `kbps` (bisection over the
    measured size, on a log scale)."""
    if codec.fixed or codec.grid is None:
        codec.refuse_step()
    seconds = audio.shape[-1] / codec.loaded.sample_rate
    z = encode_audio(codec.loaded, audio, codec.chunking)[0].numpy()

    def rate(step: float) -> float:
        step = codec.check_step(step)
        symbols = codec.grid.symbols(z, step)
        return len(codec.encode_symbols(symbols, audio.shape[-1], step)) * 8 / seconds / 1000

    finest = max(STEP_RANGE[0], 2.02 * codec.grid.reach * MARGIN / MAX_SYMBOLS)
    lo, hi = math.log(finest), math.log(STEP_RANGE[1])
    if rate(math.exp(hi)) > kbps:
        raise LyraError(
            f"--kbps {kbps:g}: {name} needs at least {rate(math.exp(hi)):.2f} kbps with this "
            f"model (at the coarsest step, {STEP_RANGE[1]:g}); give a higher --kbps"
        )
    if rate(finest) <= kbps:
        return codec.check_step(finest)
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if rate(math.exp(mid)) <= kbps else (mid, hi)
    return codec.check_step(math.exp(hi))
