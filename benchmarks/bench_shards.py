"""Reading prepared examples: tar shards (the `shards` dataset) against the preparation cache.

The shards are written from the `audio_folder` dataset over the same cache, so both read the same
examples (32768-sample stereo segments at 44.1 kHz, peak-normalised), in one process without
loader workers: the folder dataset in a shuffled index order, as training reads it (memory maps of
the cache, each segment normalised as it is read); the shards one after another as a data worker
streams them (from the files, and through `pipe:cat`). Both sources sit in the page cache after
the first round, so this compares decoding, not the disk. Each benchmark stores examples/s and
MB/s (of float32 audio delivered) in `extra_info` and prints them; the machine is shared, so
compare the ratios within one run.

Run: `.venv/bin/pytest benchmarks/bench_shards.py --benchmark-only -s -p no:cacheprovider`.
With `--benchmark-disable` (CI) the audio is shortened so that the file runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.bench_data import CHANNELS, RATE, SEGMENT, timed, write_wavs
from lyra_core import BuildContext
from lyra_plugins.datasets import AudioFolderSpec
from lyra_plugins.datasets.shards import ShardsSpec, write_shards

CTX = BuildContext(sample_rate=RATE, channels=CHANNELS, segment_length=SEGMENT)
SHARD_MB = 32.0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, request) -> tuple[AudioFolderSpec, Path]:
    """A warm cache of a few minutes of stereo WAV, and the same examples as shards."""
    disabled = request.config.getoption("benchmark_disable", False)
    root = tmp_path_factory.mktemp("shards_bench")
    write_wavs(root / "wav", 0.5 if disabled else 4.0)
    folder = AudioFolderSpec(paths=(str(root / "wav"),), cache_dir=str(root / "cache"))
    write_shards(folder, CTX, root / "shards", shard_mb=SHARD_MB)
    return folder, root / "shards"


def report(benchmark, examples: int) -> None:
    """Examples/s and MB/s from the benchmark's mean (or one timed run if disabled)."""
    stats = getattr(benchmark, "stats", None)
    seconds = stats.stats.mean if stats else benchmark.extra_info["_seconds"]
    mb = examples * CHANNELS * SEGMENT * 4 / 2**20
    benchmark.extra_info["examples"] = examples
    benchmark.extra_info["examples_per_s"] = round(examples / seconds, 1)
    benchmark.extra_info["mb_per_s"] = round(mb / seconds, 1)
    print(
        f"\n{benchmark.name}: {examples} examples in {seconds:.3f} s = "
        f"{examples / seconds:.1f} examples/s, {mb / seconds:.1f} MB/s"
    )


def read_all(examples) -> int:
    n = 0
    for x in examples:
        assert x.shape == (CHANNELS, SEGMENT)
        n += 1
    return n


@pytest.mark.benchmark(group="data: read the prepared examples, one process")
def test_folder_cache(benchmark, prepared):
    folder, _ = prepared
    dataset = folder.build(CTX, "train")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    n = timed(benchmark, lambda: read_all(dataset[i] for i in order), rounds=5)
    report(benchmark, n)


@pytest.mark.parametrize("source", ["files", "pipe:cat"])
@pytest.mark.benchmark(group="data: read the prepared examples, one process")
def test_shards(benchmark, prepared, source, monkeypatch):
    monkeypatch.setenv("LYRA_ALLOW_PIPE", "1")  # the pipe:cat shards are the benchmark's own
    folder, shards = prepared
    names = sorted(p.name for p in shards.glob("train-*.tar"))
    urls = [str(shards / n) if source == "files" else f"pipe:cat {shards / n}" for n in names]
    spec = ShardsSpec(urls=tuple(urls), index=str(shards / "index.json"))
    dataset = spec.build(CTX, "train")
    n = timed(benchmark, lambda: read_all(dataset), rounds=5)
    assert n == len(folder.build(CTX, "train"))  # the same examples as the folder's
    report(benchmark, n)


def test_the_shards_hold_the_folders_examples(prepared):
    """What the comparison rests on: one epoch of the shards is the folder dataset's examples."""
    folder, shards = prepared
    dataset = folder.build(CTX, "train")
    names = sorted(p.name for p in shards.glob("train-*.tar"))
    streamed = ShardsSpec(urls=tuple(str(shards / n) for n in names)).build(CTX, "train")
    got = sorted(x.numpy().tobytes() for x in streamed)
    want = sorted(np.asarray(dataset[i]).tobytes() for i in range(len(dataset)))
    assert got == want
