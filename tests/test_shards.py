"""Sharded data: `lyra data prepare --shards`, the `shards` dataset and its training stream."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lyra_core import BuildContext
from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.loader import load_spec, resolved
from lyra_core.services.checkpoint import load
from lyra_core.services.rundir import spec_hash
from lyra_core.testing import torch_threads
from lyra_core.training import train
from lyra_core.training.data import Position, batch_stream
from lyra_plugins.datasets import SyntheticSpec
from lyra_plugins.datasets.shards import ShardsSpec, expand_braces, write_shards

from .helpers import NO_TRACKING, autoencoder, short_training

RATE, LENGTH = 8000, 1024
CTX = BuildContext(sample_rate=RATE, channels=1, segment_length=LENGTH, seed=0)
REGISTRY = load_plugins(builtins_only=True).registry
TINY = {
    "name": "tiny",
    "seed": 0,
    "model": autoencoder({"type": "gaussian", "latent_dim": 4}, bands=None),
    "losses": [{"type": "l1"}],
    "training": short_training(4, checkpoint_every=2),
    "tracking": NO_TRACKING,
}


def write_spec(path: Path, dataset: dict, **data) -> Path:
    spec = {**TINY, "data": {"dataset": dataset, "sample_rate": RATE, "channels": 1, **data}}
    path.write_text(json.dumps(spec))
    return path


def members(shard: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]


def by_key(folder: Path, split: str) -> dict[int, tuple[np.ndarray, dict]]:
    """Every example of a split's shards, read with tarfile and numpy alone, by key; checks the
    layout webdataset reads: a `.npy` and then a `.json` member per key, keys without dots."""
    found = {}
    for shard in sorted(folder.glob(f"{split}-*.tar")):
        items = members(shard)
        assert len(items) % 2 == 0
        for (npy, audio), (meta, text) in zip(items[::2], items[1::2], strict=True):
            key = npy.removesuffix(".npy")
            assert meta == f"{key}.json" and "." not in key and int(key) not in found
            found[int(key)] = (np.load(io.BytesIO(audio)), json.loads(text))
    return found


@pytest.fixture(scope="module")
def synthetic_shards(tmp_path_factory) -> Path:
    """48 + 4 synthetic examples in shards of 5 (the last train shard holds 3)."""
    folder = tmp_path_factory.mktemp("synthetic") / "shards"
    source = SyntheticSpec(train_examples=48, validation_examples=4, max_partials=2)
    write_shards(source, CTX, folder, examples_per_shard=5)
    return folder


def identities(folder: Path) -> dict[bytes, int]:
    """Each train example's bytes -> its key, to tell which examples a batch holds."""
    return {audio.tobytes(): key for key, (audio, _) in by_key(folder, "train").items()}


def keys_of(batches: list[torch.Tensor], ids: dict[bytes, int]) -> list[int]:
    return [ids[x.numpy().tobytes()] for batch in batches for x in batch]


def shards_dataset(folder: Path, pattern: str = "train-{000000..000009}.tar", **fields):
    return ShardsSpec(urls=(str(folder / pattern),), **fields).build(CTX, "train")


# -- preparing ----------------------------------------------------------------------------------


def test_prepare_writes_the_folder_datasets_examples_as_shards(tmp_path, capsys):
    wav = tmp_path / "wav"
    wav.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        audio = 0.3 * rng.standard_normal((3 * RATE + 100 * i, 1))
        sf.write(wav / f"take{i}.wav", audio.astype(np.float32), RATE)
    dataset = {"type": "audio_folder", "paths": [str(wav)], "cache_dir": str(tmp_path / "c")}
    spec = write_spec(
        tmp_path / "spec.json", {**dataset, "validation_fraction": 0.3}, segment_length=LENGTH
    )
    out = tmp_path / "shards"
    args = ["data", "prepare", str(spec), "--shards", str(out), "--examples-per-shard", "4"]
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "prepared 4 files" in report and f"index: {out / 'index.json'}" in report

    loaded = load_spec(spec, REGISTRY)
    index = json.loads((out / "index.json").read_text())
    assert index["data_spec_hash"] == spec_hash(resolved(loaded, REGISTRY)["data"])
    assert (index["sample_rate"], index["channels"], index["segment_length"]) == (RATE, 1, LENGTH)
    for split in ("train", "validation"):
        folder = loaded.data.dataset.build(loaded.context(REGISTRY), split)
        shards = by_key(out, split)
        assert sorted(shards) == list(range(len(folder))) and len(folder) > 4
        counts = [s["examples"] for s in index["splits"][split]["shards"]]
        assert counts[:-1] == [4] * (len(counts) - 1) and 1 <= counts[-1] <= 4
        assert sum(counts) == index["splits"][split]["examples"] == len(folder)
        for key, (audio, meta) in shards.items():
            number, start = folder.segments[key]
            assert np.array_equal(audio, folder[key].numpy())
            assert meta["source"] == str(folder.files[number].path) and meta["offset"] == start
            assert (meta["split"], meta["sample_rate"], meta["frames"]) == (split, RATE, 1024)
    assert list(by_key(out, "train")) != sorted(by_key(out, "train"))  # written shuffled

    shards_spec = {"type": "shards", "urls": [str(out / "train-{000000..000099}.tar")]}
    sharded = load_spec(
        write_spec(tmp_path / "s.json", shards_spec, segment_length=LENGTH), REGISTRY
    )
    with pytest.raises(LyraError, match=r"train-0000\d\d.tar \('.*'\) is not listed in the index"):
        sharded.data.dataset.build(sharded.context(REGISTRY), "train")
    last = len(index["splits"]["train"]["shards"]) - 1
    stats = write_spec(tmp_path / "t.json", shards_spec, segment_length=LENGTH)
    text = stats.read_text().replace("000099", f"{last:06d}")
    stats.write_text(text)
    capsys.readouterr()
    assert main(["data", "stats", str(stats)]) == 0
    train, validation = capsys.readouterr().out.splitlines()
    counts = {split: index["splits"][split]["examples"] for split in ("train", "validation")}
    assert train.startswith(f"train: {counts['train']} examples in {last + 1} shard(s)")
    assert validation.startswith(f"validation: {counts['validation']} examples in ")
    assert main(["data", "prepare", str(stats), "--shards", str(tmp_path / "again")]) == 2
    assert "only map-style datasets can be written as shards" in capsys.readouterr().err
    assert main(["data", "prepare", str(spec), "--shard-size", "1"]) == 2
    assert "--shard-size and --examples-per-shard need --shards DIR" in capsys.readouterr().err


def test_the_shards_dataset_gives_the_folder_datasets_examples(tmp_path):
    wav = tmp_path / "wav"
    wav.mkdir()
    for i in range(3):
        audio = np.random.default_rng(i).uniform(-0.5, 0.5, (RATE, 1))
        sf.write(wav / f"clip{i}.wav", audio, RATE)
    dataset = {
        "type": "audio_folder",
        "paths": [str(wav)],
        "cache_dir": str(tmp_path / "c"),
        "validation_fraction": 0.3,
    }
    spec = load_spec(write_spec(tmp_path / "a.json", dataset, segment_length=LENGTH), REGISTRY)
    ctx = spec.context(REGISTRY)
    write_shards(spec.data.dataset, ctx, tmp_path / "s", examples_per_shard=3)
    folder_train = spec.data.dataset.build(ctx, "train")
    folder_val = spec.data.dataset.build(ctx, "validation")
    last = len(list((tmp_path / "s").glob("train-*.tar"))) - 1
    shards = ShardsSpec(urls=(str(tmp_path / "s" / f"train-{{000000..{last:06d}}}.tar"),))
    train_set, val_set = shards.build(ctx, "train"), shards.build(ctx, "validation")
    streamed = Counter(x.numpy().tobytes() for x in train_set)
    assert streamed == Counter(folder_train[i].numpy().tobytes() for i in range(len(folder_train)))
    assert len(val_set) == len(folder_val)
    assert all(torch.equal(val_set[i], folder_val[i]) for i in range(len(val_set)))


def test_preparing_again_replaces_the_shards(synthetic_shards, tmp_path):
    folder = tmp_path / "again"
    source = SyntheticSpec(train_examples=12, validation_examples=2, max_partials=2)
    write_shards(source, CTX, folder, examples_per_shard=5)
    assert len(list(folder.glob("train-*.tar"))) == 3
    write_shards(source, CTX, folder, examples_per_shard=12)
    assert sorted(p.name for p in folder.iterdir()) == [
        "index.json",
        "train-000000.tar",
        "validation-000000.tar",
    ]


# -- naming shards ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def allow_pipes(monkeypatch):
    """These tests run `pipe:` shards they wrote themselves."""
    monkeypatch.setenv("LYRA_ALLOW_PIPE", "1")


def test_a_pipe_command_runs_only_when_allowed(synthetic_shards, monkeypatch):
    monkeypatch.delenv("LYRA_ALLOW_PIPE")
    index = str(synthetic_shards / "index.json")
    spec = ShardsSpec(urls=(f"pipe:cat {synthetic_shards}/train-000000.tar",), index=index)
    with pytest.raises(LyraError, match=r"runs the shell command .* set LYRA_ALLOW_PIPE=1"):
        list(spec.build(CTX, "train"))


def test_brace_expansion_is_webdatasets():
    assert expand_braces("d/train-{000000..000002}.tar") == [
        "d/train-000000.tar",
        "d/train-000001.tar",
        "d/train-000002.tar",
    ]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("x{1,{2..3}}y") == ["x1y", "x2y", "x3y"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("plain.tar") == ["plain.tar"] and expand_braces("a{b}") == ["a{b}"]
    for bad in ("train-{0..3.tar", "train-0..3}.tar"):
        with pytest.raises(LyraError, match="'\\{'"):
            expand_braces(bad)


def test_file_urls_and_pipe_commands_read_the_same_examples(synthetic_shards):
    path = synthetic_shards / "train-000003.tar"
    plain = [x for _, x in shards_dataset(synthetic_shards).read_shard(3, 0, 5, set())]
    for url in (f"file://{path}", f"pipe:cat {path}"):
        spec = ShardsSpec(urls=(url,), index=str(synthetic_shards / "index.json"))
        got = list(spec.build(CTX, "train"))
        assert len(got) == 5 and all(torch.equal(a, b) for a, b in zip(got, plain, strict=True))
    # part of a shard, leaving some out: the stream's partial reads
    part = shards_dataset(synthetic_shards).read_shard(3, 1, 4, {2})
    assert [n for n, _ in part] == [1, 3]
    # streamed by two workers whose chunks end inside shards (their commands are stopped there)
    piped = ShardsSpec(
        urls=(f"pipe:cat {synthetic_shards}/train-{{000000..000009}}.tar",),
        index=f"file://{synthetic_shards}/index.json",
    ).build(CTX, "train")
    stream, usable = batch_stream(piped, 4, 0, Position(), num_workers=2)
    epoch = keys_of([next(stream) for _ in range(usable // 4)], identities(synthetic_shards))
    assert sorted(epoch) == list(range(48))


def hand_made_shard(path: Path, examples: list[np.ndarray]) -> Path:
    """A shard written with tarfile and numpy alone, as another tool might write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, audio in enumerate(examples):
            for ext, data in (("npy", npy_bytes(audio)), ("json", b"{}")):
                info = tarfile.TarInfo(f"sample{key:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def npy_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, audio)
    return buffer.getvalue()


def test_shards_written_elsewhere_are_read_or_refused(synthetic_shards, tmp_path):
    index = str(synthetic_shards / "index.json")  # lists train-000000.tar with 5 examples
    audio = np.random.default_rng(0).standard_normal((5, 1, LENGTH)).astype(np.float32)
    fortran = [np.asfortranarray(a) for a in audio]  # another header: parsed, not matched
    shard = hand_made_shard(tmp_path / "f" / "train-000000.tar", fortran)
    got = list(ShardsSpec(urls=(str(shard),), index=index).build(CTX, "train"))
    assert all(np.array_equal(g.numpy(), a) for g, a in zip(got, audio, strict=True))
    wrongs = [(audio.astype(np.float64), "float64 [1, 1024]"), (audio[..., :7], "float32 [1, 7]")]
    for number, (wrong, what) in enumerate(wrongs):
        shard = hand_made_shard(tmp_path / f"w{number}" / "train-000000.tar", list(wrong))
        data = ShardsSpec(urls=(str(shard),), index=index).build(CTX, "train")
        with pytest.raises(LyraError, match=re.escape(f"sample0000 is {what}, but the spec")):
            list(data)
    short = hand_made_shard(tmp_path / "short" / "train-000000.tar", list(audio[:3]))
    with pytest.raises(LyraError, match="holds 3 examples, fewer than the 5 its index lists"):
        list(ShardsSpec(urls=(str(short),), index=index).build(CTX, "train"))


def test_a_failing_pipe_command_is_one_clear_error(synthetic_shards, tmp_path):
    index = str(synthetic_shards / "index.json")
    missing = tmp_path / "gone" / "train-000000.tar"
    spec = ShardsSpec(urls=(f"pipe:cat {missing}",), index=index)
    data = spec.build(CTX, "train")
    with pytest.raises(LyraError) as caught:
        list(data)
    message = str(caught.value)
    assert (
        f"shard pipe:cat {missing}: the command `cat {missing}` failed (exit status 1)" in message
    )
    assert "No such file or directory" in message
    stream, _ = batch_stream(data, 2, 0, Position(), num_workers=1)
    with pytest.raises(LyraError) as caught:  # from a loader worker: the message, no traceback
        next(stream)
    assert str(caught.value) == message
    with pytest.raises(LyraError, match="cannot tell which shard"):
        ShardsSpec(urls=("pipe:echo hello",), index=index).build(CTX, "train")
    with pytest.raises(LyraError, match=re.escape("pipe:aws s3 cp s3://b/train-000000.tar -")):
        ShardsSpec(urls=("s3://b/train-000000.tar",), index=index).build(CTX, "train")


def test_what_the_index_must_say(synthetic_shards):
    pipe = f"pipe:cat {synthetic_shards / 'train-000000.tar'}"
    with pytest.raises(LyraError, match="set the dataset's 'index'"):
        ShardsSpec(urls=(pipe,)).build(CTX, "train")
    by_pipe = f"pipe:cat {synthetic_shards / 'index.json'}"
    with pytest.raises(LyraError, match="set the dataset's 'validation'"):
        ShardsSpec(urls=(pipe,), index=by_pipe).build(CTX, "validation")
    val = ShardsSpec(
        urls=(pipe,), index=by_pipe, validation=(str(synthetic_shards / "validation-000000.tar"),)
    ).build(CTX, "validation")
    assert len(val) == 4
    other = BuildContext(sample_rate=16000, channels=1, segment_length=LENGTH)
    with pytest.raises(
        LyraError, match=r"sample_rate 8000 \(the spec's data.sample_rate is 16000\)"
    ):
        ShardsSpec(urls=(str(synthetic_shards / "train-000000.tar"),)).build(other, "train")
    twice = (
        str(synthetic_shards / "train-00000{0,1}.tar"),
        f"file://{synthetic_shards}/train-000001.tar",
    )
    with pytest.raises(LyraError, match=re.escape("names the shard train-000001.tar twice")):
        ShardsSpec(urls=twice).build(CTX, "train")


# -- the training stream ------------------------------------------------------------------------


def _rank(rank: int, world: int, folder: str, init: str, out: str) -> None:
    """One of two gloo processes: two epochs of its batches with two data workers."""
    # As under torchrun, loader workers fork (a spawned process would spawn them, importing
    # everything again in each).
    mp.set_start_method("fork", force=True)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        data = shards_dataset(Path(folder))
        stream, usable = batch_stream(data, 4, 7, Position(), rank, world, num_workers=2)
        ids = identities(Path(folder))
        epochs = [keys_of([next(stream) for _ in range(usable // 4)], ids) for _ in range(2)]
        gathered: list = [None] * world
        dist.all_gather_object(gathered, {"usable": usable, "epochs": epochs})
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_ranks_with_two_workers_see_every_example_once_per_epoch(synthetic_shards, tmp_path):
    out = tmp_path / "seen.json"
    args = (2, str(synthetic_shards), f"file://{tmp_path / 'rendezvous'}", str(out))
    mp.spawn(_rank, args=args, nprocs=2, join=True)
    ranks = json.loads(out.read_text())
    assert [r["usable"] for r in ranks] == [48, 48]  # 12 steps of 4 (2 per rank) per epoch
    first, second = ([key for r in ranks for key in r["epochs"][e]] for e in (0, 1))
    assert sorted(first) == sorted(second) == list(range(48))  # each example once per epoch
    assert [len(r["epochs"][0]) for r in ranks] == [24, 24]
    assert first != second  # the shards are shuffled again


def test_uneven_shards_give_every_rank_the_same_steps(synthetic_shards):
    """45 examples, 2 ranks x 2 workers x 2 examples: 10 batches per rank and epoch (a multiple
    of the workers); 5 examples of the epoch's order are left out, others in the next epoch."""
    data = shards_dataset(synthetic_shards, "train-{000000..000008}.tar")
    assert len(data) == 45
    ids = identities(synthetic_shards)
    stored = set(keys_of([torch.stack(list(data))], ids))
    left_out = []
    streams = [batch_stream(data, 4, 3, Position(), r, 2, num_workers=2) for r in (0, 1)]
    assert [usable for _, usable in streams] == [40, 40]
    for _ in range(2):
        seen = [keys_of([next(s) for _ in range(10)], ids) for s, _ in streams]
        assert len(seen[0]) == len(seen[1]) == 20
        assert len(set(seen[0] + seen[1])) == 40  # no example twice
        assert set(seen[0] + seen[1]) <= stored
        left_out.append(stored - set(seen[0] + seen[1]))
    assert [len(s) for s in left_out] == [5, 5] and left_out[0] != left_out[1]


@pytest.mark.parametrize(
    ("rank", "world", "workers", "buffer"), [(1, 2, 2, 4), (0, 1, 0, 0), (0, 1, 2, 100)]
)
def test_a_resumed_stream_continues_with_the_same_batches(
    synthetic_shards, rank, world, workers, buffer
):
    data = shards_dataset(synthetic_shards, shuffle_buffer=buffer)
    stream, usable = batch_stream(data, 4, 11, Position(), rank, world, workers)
    steps = usable // 4
    full = [next(stream) for _ in range(3 * steps)]
    if buffer:  # the buffer reorders a worker's examples beyond the shards' own order
        unbuffered = shards_dataset(synthetic_shards)
        plain, _ = batch_stream(unbuffered, 4, 11, Position(), rank, world, workers)
        assert not all(torch.equal(next(plain), b) for b in full[:steps])
    for epoch, batch in ((0, 3), (1, 0), (1, steps - 1), (2, 5)):
        resumed, _ = batch_stream(data, 4, 11, Position(epoch, batch * 4), rank, world, workers)
        at = epoch * steps + batch
        for expected in full[at : at + 4]:
            assert torch.equal(next(resumed), expected)


def test_too_few_examples_for_a_batch(synthetic_shards):
    data = shards_dataset(synthetic_shards, "train-000000.tar")
    with pytest.raises(LyraError, match="5 examples, fewer than one batch of 4 x 2 data workers"):
        batch_stream(data, 4, 0, Position(), num_workers=2)


# -- training -----------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    with torch_threads(1):
        yield


def test_lyra_run_trains_on_shards_and_resumes_exactly(tmp_path, one_thread):
    """12 examples of 4096 samples in batches of 4: step 4 is in the second epoch."""
    ctx = BuildContext(sample_rate=RATE, channels=1, segment_length=4096)
    source = SyntheticSpec(train_examples=12, validation_examples=4, max_partials=2)
    write_shards(source, ctx, tmp_path / "shards", examples_per_shard=5)
    dataset = {"type": "shards", "urls": [str(tmp_path / "shards" / "train-{000000..000002}.tar")]}
    spec = write_spec(tmp_path / "spec.json", dataset, segment_length=4096, batch_size=4)
    plugins = load_plugins(builtins_only=True)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train(plugins, str(spec), run_dir=str(full), device="cpu") == "completed"
    # the same run stopped after step 2 (its checkpoint) and resumed to step 4
    assert train(plugins, str(spec), ["training.steps=2"], run_dir=str(cut), device="cpu")
    assert train(plugins, resume=str(cut), overrides=["training.steps=4"], device="cpu")
    a, b = load(full / "checkpoints" / "last.pt"), load(cut / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4 and a["data"] == b["data"] == {"epoch": 1, "offset": 4}
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
