"""The `shards` dataset: prepared examples as WebDataset-style tar shards, streamed in training.

`lyra data prepare SPEC --shards DIR` (`write_shards`) writes the examples the spec's dataset
gives, each split in tar files of about the same size, and an index:

  DIR/train-000000.tar, ...       the train split, in an order shuffled once when written
  DIR/validation-000000.tar, ...  the validation split, in its own order
  DIR/index.json                  `format`, `sample_rate`, `channels`, `segment_length`,
                                  `data_spec_hash` (of the resolved data section), `dataset`
                                  (the source dataset's resolved spec) and per split its
                                  `examples` and `shards` (each `name`, `examples`, `bytes`)

Each example is two consecutive members with one key (digits, no dots, so webdataset groups
them as one sample): `<key>.npy`, float32 [channels, segment_length] in NumPy's format, and
`<key>.json`: `split`, `index` (the example's number in the source dataset's split), `source`
(its audio file, or the source dataset's type), `offset` (its first frame there, counted at
`sample_rate`), `sample_rate`, `channels`, `frames`. Plain `tarfile` writes and reads them.

A shard is a path, a `file://` URL or `pipe:COMMAND` (the command's standard output is read as
the tar, as webdataset does). Example counts come from the index, which the training stream needs
to give every rank the same number of batches (lyra_core.training.data).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import posixpath
import re
import shlex
import subprocess
import tarfile
import tempfile
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

import attrs
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from lyra_core import BuildContext, LyraError, param
from lyra_core.seeds import derive_seed
from lyra_core.services.atomic import atomic_write, write_text
from lyra_core.validators import EachCheck, size
from lyra_plugins.datasets import SPLITS, AudioFolderSpec, FolderDataset, Split, _check_split

FORMAT = "lyra-shards/1"
INDEX = "index.json"
DEFAULT_SHARD_MB = 256.0
MAX_SHARDS = 1_000_000  # shards one brace pattern may expand to
MAX_BUFFER = 1_000_000
STDERR_TAIL = 2000  # characters of a failed command's error output quoted
SHARD_NAME = re.compile(r"^(train|validation)-\d{6}\.tar$")


# --------------------------------------------------------------------------------------------
# names: brace expansion and where a shard is


def _closing(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise LyraError(f"shards: '{text}' has an unclosed '{{'")


def _split_top(body: str) -> list[str]:
    """`body` split at the commas outside nested braces."""
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(body):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(body[last:i])
            last = i + 1
    return [*parts, body[last:]]


def _range(text: str, body: str) -> list[str] | None:
    m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
    if m is None:
        return None
    lo, hi = int(m[1]), int(m[2])
    if abs(hi - lo) >= MAX_SHARDS:
        raise LyraError(f"shards: '{text}' expands to more than {MAX_SHARDS} names")
    padded = any(len(b.lstrip("-")) > 1 and b.lstrip("-").startswith("0") for b in m.groups())
    width = max(len(b) for b in m.groups()) if padded else 0
    step = 1 if hi >= lo else -1
    return [f"{n:0{width}d}" for n in range(lo, hi + step, step)]


def expand_braces(text: str) -> list[str]:
    """Every name a pattern stands for, as webdataset (braceexpand) expands it:
    `a-{000..002}.tar` -> a-000.tar a-001.tar a-002.tar (zero-padded like the bounds),
    `{x,y}` -> x y; groups may repeat and nest; `{x}` stays as it is."""
    at = text.find("{")
    if at < 0:
        if "}" in text:
            raise LyraError(f"shards: '{text}' has a '}}' without its '{{'")
        return [text]
    end = _closing(text, at)
    head, body, tail = text[:at], text[at + 1 : end], text[end + 1 :]
    parts = _split_top(body)
    if len(parts) > 1:
        options = [o for part in parts for o in expand_braces(part)]
    else:
        options = _range(text, body) or [f"{{{o}}}" for o in expand_braces(body)]
    return [head + o + t for o in options for t in expand_braces(tail)]


def local_path(url: str) -> Path | None:
    """The file a shard or index URL names, or None for a `pipe:` command."""
    if url.startswith("pipe:"):
        return None
    if url.startswith("file:"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise LyraError(f"shards: '{url}': only local file:// URLs can be read")
        return Path(unquote(parsed.path))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise LyraError(
            f"shards: '{url}': read remote shards through a command, e.g. "
            f"'pipe:curl -sfL {url}' or 'pipe:aws s3 cp {url} -'"
        )
    return Path(url).expanduser()


def shard_name(url: str) -> str:
    """A shard's file name: the path's, or that of the `.tar` file a `pipe:` command names."""
    path = local_path(url)
    if path is not None:
        return path.name
    try:
        words = shlex.split(url[5:])
    except ValueError:
        words = url[5:].split()
    tars = [w for w in words if w.endswith(".tar")]
    if not tars:
        raise LyraError(
            f"shards: cannot tell which shard '{url}' reads: its command must name the "
            ".tar file (e.g. 'pipe:aws s3 cp s3://bucket/train-000000.tar -')"
        )
    return posixpath.basename(tars[-1])


def expand_all(patterns: Sequence[str], field: str) -> list[str]:
    urls = [u for p in patterns for u in expand_braces(p)]
    seen: dict[str, str] = {}
    for url in urls:
        name = shard_name(url)
        if name in seen:
            raise LyraError(
                f"shards: '{field}' names the shard {name} twice ('{seen[name]}' and '{url}'); "
                "its examples would be read twice per epoch"
            )
        seen[name] = url
    return urls


# --------------------------------------------------------------------------------------------
# reading tar shards


ALLOW_PIPE = "LYRA_ALLOW_PIPE"  # a spec is data: its shell commands run only when allowed


class _Pipe:
    """A `pipe:` command running with its output read as a tar stream."""

    def __init__(self, url: str):
        self.url, self.command = url, url[5:]
        if os.environ.get(ALLOW_PIPE) != "1":
            raise LyraError(
                f"shard {url}: runs the shell command `{self.command}`; a spec is data, so Lyra "
                f"runs its commands only when you allow it: set {ALLOW_PIPE}=1 (for specs you "
                "trust), or copy the shards to local paths"
            )
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(
            self.command, shell=True, stdout=subprocess.PIPE, stderr=self.errors
        )
        assert self.proc.stdout is not None
        self.stdout: IO[bytes] = self.proc.stdout

    def check(self) -> None:
        """Read the rest of the output and wait; a failed command is a LyraError."""
        while self.stdout.read(1 << 16):
            pass
        status = self.proc.wait()
        if status != 0:
            self.errors.seek(0)
            tail = self.errors.read().decode(errors="replace").strip()[-STDERR_TAIL:]
            raise LyraError(
                f"shard {self.url}: the command `{self.command}` failed (exit status {status})"
                + (f": {tail}" if tail else " and wrote no error message")
            )

    def close(self) -> None:
        if self.proc.poll() is None:  # stopped early: the rest of the shard is not needed
            self.proc.kill()
        self.proc.wait()
        self.stdout.close()
        self.errors.close()


@functools.cache
def npy_header(shape: tuple[int, int]) -> bytes:
    """The .npy header NumPy writes before float32 audio of `shape` (what `write_shards` writes)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, np.lib.format.header_data_from_array_1_0(np.empty(shape, np.float32))
    )
    return buffer.getvalue()


def _read_npy(f: IO[bytes], size: int, url: str, key: str, shape: tuple[int, int]) -> torch.Tensor:
    """An example's audio from the `size` bytes of its member at `f`; a header other than the
    one `write_shards` writes is parsed."""
    expected = npy_header(shape)
    out = np.empty(shape, dtype=np.float32)
    if size != len(expected) + out.nbytes:
        return _parse_npy(f.read(size), url, key, shape)
    start = f.read(len(expected))
    if start != expected:
        return _parse_npy(start + f.read(size - len(start)), url, key, shape)
    if f.readinto(memoryview(out).cast("B")) != out.nbytes:
        raise LyraError(f"shard {url}: example {key} is cut short; prepare the shards again")
    return torch.from_numpy(out)


def _member_data(tar: tarfile.TarFile, member: tarfile.TarInfo, local: bool) -> IO[bytes]:
    """A file at `member`'s data: a local archive itself (a copy fewer than extractfile's)."""
    if local and tar.fileobj is not None:
        tar.fileobj.seek(member.offset_data)
        return tar.fileobj
    f = tar.extractfile(member)
    assert f is not None
    return f


def _parse_npy(data: bytes, url: str, key: str, shape: tuple[int, int]) -> torch.Tensor:
    try:
        audio = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise LyraError(f"shard {url}: example {key} is not a readable .npy ({exc})") from None
    if audio.shape != shape or audio.dtype != np.float32:
        raise LyraError(
            f"shard {url}: example {key} is {audio.dtype} {list(audio.shape)}, but the spec's "
            f"data is float32 {list(shape)} ([data.channels, data.segment_length]); prepare "
            "the shards with this spec's data format"
        )
    return torch.from_numpy(np.array(audio))


def _open(url: str, pipe: _Pipe | None) -> tarfile.TarFile:
    if pipe is not None:
        return tarfile.open(fileobj=pipe.stdout, mode="r|")
    path = local_path(url)
    assert path is not None
    if not path.is_file():
        raise LyraError(f"shard {url}: no such file")
    return tarfile.open(path, mode="r:")


def read_tar(
    url: str, start: int, stop: int | None, skip: Container[int], shape: tuple[int, int]
) -> Iterator[tuple[int, torch.Tensor]]:
    """`(number, example)` for the examples start <= number < stop of one shard, in stored
    order, leaving out (without decoding) the numbers in `skip`; stop None: to the end."""
    pipe = _Pipe(url) if url.startswith("pipe:") else None
    number = -1
    try:
        with _open(url, pipe) as tar:
            key = None
            for member in tar:
                if not member.isfile():
                    continue
                stem, _, ext = posixpath.basename(member.name).partition(".")
                here = posixpath.join(posixpath.dirname(member.name), stem)
                if here != key:
                    key, number = here, number + 1
                    if stop is not None and number >= stop:
                        return  # the rest of the shard is someone else's
                if ext == "npy" and number >= start and number not in skip:
                    f = _member_data(tar, member, pipe is None)
                    yield number, _read_npy(f, member.size, url, here, shape)
        if pipe is not None:
            pipe.check()
    except (tarfile.TarError, EOFError, OSError) as exc:
        if pipe is not None:
            pipe.check()
        raise LyraError(f"shard {url}: not a readable tar file ({exc})") from None
    finally:
        if pipe is not None:
            pipe.close()
    if stop is not None and number + 1 < stop:
        raise LyraError(
            f"shard {url}: holds {number + 1} examples, fewer than the {stop} its index lists; "
            "prepare the shards again"
        )


class ShardsDataset(IterableDataset):
    """A split's shards: iterated in order (split by shard among loader workers), and read in
    parallel by the training stream through `read_shard` (lyra_core.training.data)."""

    def __init__(
        self, urls: Sequence[str], sizes: Sequence[int], shape: tuple[int, int], buffer: int = 0
    ):
        self.urls, self.shard_sizes = list(urls), [int(n) for n in sizes]
        self.shape, self.shuffle_buffer = shape, buffer

    def __len__(self) -> int:
        return sum(self.shard_sizes)

    def read_shard(
        self, shard: int, start: int, stop: int, skip: Container[int]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        return read_tar(self.urls[shard], start, stop, skip, self.shape)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        first, step = (info.id, info.num_workers) if info else (0, 1)
        for shard in range(first, len(self.urls), step):
            for _, x in self.read_shard(shard, 0, self.shard_sizes[shard], frozenset()):
                yield x


class ShardsValidation(Dataset):
    """The validation shards as a map-style dataset: read in order as far as asked for, and kept
    in memory (validation reads its first few batches again and again)."""

    def __init__(self, shards: ShardsDataset):
        self.shards = shards
        self._read: list[torch.Tensor] = []
        self._rest: Iterator[torch.Tensor] | None = None

    def __getstate__(self) -> dict:  # loader workers read on their own
        return {**self.__dict__, "_read": [], "_rest": None}

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} of {len(self)}")
        while len(self._read) <= index:
            if self._rest is None:
                self._rest = iter(self.shards)
            self._read.append(next(self._rest))
        return self._read[index]


# --------------------------------------------------------------------------------------------
# the index


def _run_for_text(url: str) -> str:
    done = subprocess.run(url[5:], shell=True, capture_output=True)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        raise LyraError(
            f"shards index {url}: the command failed (exit status {done.returncode})"
            + (f": {tail}" if tail else "")
        )
    return done.stdout.decode()


def load_index(url: str) -> dict[str, Any]:
    """An index.json (a path, file:// URL or pipe: command), checked to be a shards index."""
    path = local_path(url)
    try:
        text = _run_for_text(url) if path is None else path.read_text(encoding="utf-8")
        index = json.loads(text)
    except OSError as exc:
        raise LyraError(
            f"shards: cannot read the index {url} ({exc.strerror or exc}); write the shards "
            "with `lyra data prepare SPEC --shards DIR`, or give the dataset's 'index'"
        ) from None
    except ValueError as exc:
        raise LyraError(f"shards index {url}: not JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise LyraError(
            f"shards index {url}: not an index written by `lyra data prepare --shards` "
            f"(format {FORMAT})"
        )
    return index


def _check_format(index: dict[str, Any], url: str, ctx: BuildContext) -> None:
    wanted = {
        "sample_rate": ctx.sample_rate,
        "channels": ctx.channels,
        "segment_length": ctx.segment_length,
    }
    wrong = [
        f"{k} {index.get(k)} (the spec's data.{k} is {v})"
        for k, v in wanted.items()
        if index.get(k) != v
    ]
    if wrong:
        raise LyraError(
            f"shards index {url}: the shards have {', '.join(wrong)}; prepare them again with "
            "this spec's data format, or set data to theirs"
        )


@attrs.define
class Catalog:
    """The shards of a spec with the index each was found in: url -> (index url, index)."""

    ctx: BuildContext
    given: str | None
    indexes: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def index_url(self, url: str) -> str:
        if self.given is not None:
            return self.given
        path = local_path(url)
        if path is None:
            raise LyraError(
                f"shards: '{url}' is a command, so its index.json cannot be found beside it; "
                "set the dataset's 'index' (a path, file:// URL or pipe: command)"
            )
        return str(path.parent / INDEX)

    def index(self, url: str) -> dict[str, Any]:
        if url not in self.indexes:
            index = load_index(url)
            _check_format(index, url, self.ctx)
            self.indexes[url] = index
        return self.indexes[url]

    def size(self, url: str) -> int:
        where = self.index_url(url)
        name = shard_name(url)
        for split in self.index(where)["splits"].values():
            for shard in split["shards"]:
                if shard["name"] == name:
                    return int(shard["examples"])
        raise LyraError(f"shards: {name} ('{url}') is not listed in the index {where}")

    def validation_urls(self) -> list[str]:
        """The validation shards the training shards' indexes list, beside each index."""
        urls = []
        for where, index in self.indexes.items():
            folder = local_path(where)
            if folder is None:
                raise LyraError(
                    f"shards: the index {where} is read by a command, so the validation shards "
                    "cannot be found from it; set the dataset's 'validation'"
                )
            urls += [
                str(folder.parent / s["name"]) for s in index["splits"]["validation"]["shards"]
            ]
        return urls


# --------------------------------------------------------------------------------------------
# writing shards


@attrs.define
class _ShardFile:
    """One tar shard being written (under a temporary name until it is complete)."""

    path: Path
    stack: contextlib.ExitStack
    tar: tarfile.TarFile
    examples: int = 0
    bytes: int = 0

    @classmethod
    def open(cls, path: Path) -> _ShardFile:
        stack = contextlib.ExitStack()
        f = stack.enter_context(atomic_write(path))
        return cls(path, stack, stack.enter_context(tarfile.open(fileobj=f, mode="w")))

    def add(self, key: str, audio: np.ndarray, meta: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        np.save(buffer, audio)
        for ext, data in (("npy", buffer.getvalue()), ("json", json.dumps(meta).encode())):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mode = len(data), 0o644
            self.tar.addfile(info, io.BytesIO(data))
            self.bytes += member_bytes(len(data))
        self.examples += 1

    def close(self) -> dict[str, Any]:
        self.stack.close()
        _readable(self.path)
        return {
            "name": self.path.name,
            "examples": self.examples,
            "bytes": self.path.stat().st_size,
        }


def _readable(path: Path) -> None:
    """Let every user read `path` (the atomic writer's temporary is private to its owner)."""
    path.chmod(0o644)


def member_bytes(size: int) -> int:
    """What a tar member of `size` bytes takes: a 512-byte header and its 512-byte blocks."""
    return 512 + -(-size // 512) * 512


def _describe(dataset: Any, index: int, source: str) -> dict[str, Any]:
    if isinstance(dataset, FolderDataset):
        number, start = (int(v) for v in dataset.segments[index])
        return {"source": str(dataset.files[number].path), "offset": start}
    return {"source": source, "offset": None}


@attrs.frozen
class _Format:
    """What every example's JSON member repeats, and the seed of the train order."""

    sample_rate: int
    seed: int
    source: str


def _write_split(
    dataset: Any, split: str, directory: Path, limits: tuple[int | None, int | None], fmt: _Format
) -> list[dict[str, Any]]:
    shard_bytes, per_shard = limits
    n = len(dataset)
    order = np.arange(n)
    if split == "train":  # shuffled once, so that a shard holds examples from all over
        order = np.random.default_rng(derive_seed(fmt.seed, "shard order")).permutation(n)
    shards: list[dict[str, Any]] = []
    current: _ShardFile | None = None
    for index in order.tolist():
        audio = np.ascontiguousarray(np.asarray(dataset[index], dtype=np.float32))
        full = current is not None and (
            (per_shard is not None and current.examples >= per_shard)
            or (
                shard_bytes is not None
                and current.bytes + member_bytes(audio.nbytes + 128) > shard_bytes
            )
        )
        if current is None or full:
            if current is not None:
                shards.append(current.close())
            current = _ShardFile.open(directory / f"{split}-{len(shards):06d}.tar")
        meta = {"split": split, "index": index, **_describe(dataset, index, fmt.source)}
        meta |= {
            "sample_rate": fmt.sample_rate,
            "channels": audio.shape[0],
            "frames": audio.shape[1],
        }
        current.add(f"{index:08d}", audio, meta)
    if current is not None:
        shards.append(current.close())
    return shards


def write_shards(
    source: Any,
    ctx: BuildContext,
    directory: Path,
    shard_mb: float | None = None,
    examples_per_shard: int | None = None,
    about: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write both splits of the dataset spec `source` as shards in `directory`, then the index
    (last, so that a crash leaves no index of missing shards); shards of an earlier preparation
    that the new index does not list are removed. Returns the index."""
    if shard_mb is not None and examples_per_shard is not None:
        raise LyraError("give a shard size or a number of examples per shard, not both")
    if examples_per_shard is None and shard_mb is None:
        shard_mb = DEFAULT_SHARD_MB
    limits = (None if shard_mb is None else int(shard_mb * 2**20), examples_per_shard)
    name = ctx.registry.name_of(source)[1] if ctx.registry is not None else type(source).__name__
    fmt = _Format(ctx.sample_rate, ctx.seed, name)
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in SPLITS:
        dataset = source.build(ctx, split)
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")) or isinstance(
            dataset, IterableDataset
        ):
            raise LyraError(
                f"dataset '{name}' is read as a stream; only map-style datasets can be "
                "written as shards"
            )
        shards = _write_split(dataset, split, directory, limits, fmt)
        splits[split] = {"examples": sum(s["examples"] for s in shards), "shards": shards}
    index = {
        "format": FORMAT,
        "sample_rate": ctx.sample_rate,
        "channels": ctx.channels,
        "segment_length": ctx.segment_length,
        **(about or {}),
        "splits": splits,
    }
    write_text(directory / INDEX, json.dumps(index, indent=1) + "\n")
    _readable(directory / INDEX)
    listed = {s["name"] for split in splits.values() for s in split["shards"]}
    for path in directory.iterdir():
        if SHARD_NAME.match(path.name) and path.name not in listed:
            path.unlink()
    return index


def shards_report(index: dict[str, Any], directory: Path) -> str:
    lines = []
    for split, entry in index["splits"].items():
        total = sum(s["bytes"] for s in entry["shards"]) / 2**20
        lines.append(
            f"wrote {entry['examples']} {split} examples in {len(entry['shards'])} shard(s) "
            f"({total:.1f} MB) to {directory}"
        )
    return "\n".join(lines) + f"\nindex: {directory / INDEX}\n"


# --------------------------------------------------------------------------------------------
# the spec


def _example_shards() -> str:
    """Shards of `audio_folder`'s example audio (22,050 Hz mono, 8,192-sample segments), for
    the contract tests."""
    user = getattr(os, "getuid", lambda: "user")()
    folder = Path(tempfile.gettempdir()) / f"lyra-example-shards-{user}"
    if not (folder / INDEX).is_file():
        ctx = BuildContext(sample_rate=22050, channels=1, segment_length=8192)
        source = attrs.evolve(AudioFolderSpec.example(), validation_fraction=0.3)
        write_shards(source, ctx, folder, examples_per_shard=4)
    return str(folder / "train-{000000..000001}.tar")


@attrs.frozen(kw_only=True)
class ShardsSpec:
    """Examples from tar shards that `lyra data prepare SPEC --shards DIR` wrote (the layout
    webdataset reads), streamed in training: shuffled by shard each epoch and shared out among
    the processes and data workers, so that each example is read once per epoch."""

    urls: tuple[str, ...] = param(
        doc="the training shards: paths, file:// URLs or 'pipe:COMMAND' (the command's output "
        "is read as the shard; it runs in a shell, only with LYRA_ALLOW_PIPE=1 set), each with "
        "brace patterns as webdataset expands them, e.g. 'data/train-{000000..000009}.tar'",
        validator=EachCheck(None, min_items=1, max_items=MAX_SHARDS),
    )
    validation: tuple[str, ...] = param(
        (),
        doc="the validation shards, in the same forms (empty: the validation shards that the "
        "training shards' index lists, in the index's folder)",
        validator=EachCheck(None, min_items=0, max_items=MAX_SHARDS),
    )
    index: str | None = param(
        None,
        doc="the index.json with every shard's example count (a path, file:// URL or "
        "'pipe:COMMAND'; default: index.json beside each shard, which 'pipe:' shards need set)",
    )
    shuffle_buffer: int = param(
        0,
        doc="examples each data worker holds in memory and draws from at random, on top of the "
        "order the shards were written in and their shuffle each epoch (0: none)",
        validator=size(MAX_BUFFER, minimum=0),
    )

    @classmethod
    def example(cls) -> ShardsSpec:
        return cls(urls=(_example_shards(),))

    def catalog(self, ctx: BuildContext) -> tuple[Catalog, list[str], list[str]]:
        """The shards' indexes, and the training and validation shards' URLs."""
        catalog = Catalog(ctx, self.index)
        train = expand_all(self.urls, "urls")
        for url in train:
            catalog.index(catalog.index_url(url))
        validation = (
            expand_all(self.validation, "validation")
            if self.validation
            else catalog.validation_urls()
        )
        return catalog, train, validation

    def build(self, ctx: BuildContext, split: Split = "train") -> Dataset:
        _check_split(split)
        catalog, train, validation = self.catalog(ctx)
        urls = train if split == "train" else validation
        if not urls:
            raise LyraError(f"shards: no {split} shards (set the dataset's 'validation')")
        shards = ShardsDataset(
            urls,
            [catalog.size(u) for u in urls],
            (ctx.channels, ctx.segment_length),
            self.shuffle_buffer if split == "train" else 0,
        )
        return shards if split == "train" else ShardsValidation(shards)

    def prepare(self, ctx: BuildContext) -> str:
        return "shards are read as they were written; nothing to prepare\n"

    def stats(self, ctx: BuildContext) -> str:
        catalog, train, validation = self.catalog(ctx)
        seconds = ctx.segment_length / ctx.sample_rate
        lines = []
        for split, urls in (("train", train), ("validation", validation)):
            n = sum(catalog.size(u) for u in urls)
            lines.append(
                f"{split}: {n} examples in {len(urls)} shard(s) ({n * seconds / 3600:.3f} h at "
                f"{ctx.sample_rate} Hz, {ctx.channels} channel(s))"
            )
        return "\n".join(lines) + "\n"

    @staticmethod
    def write(source: Any, ctx: BuildContext, directory: Path, **options: Any) -> str:
        """`lyra data prepare --shards`: write `source`'s splits as shards (`options`: those of
        `write_shards`); the report."""
        return shards_report(write_shards(source, ctx, directory, **options), directory)
