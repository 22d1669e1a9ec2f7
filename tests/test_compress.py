"""`.lyra` files: exact round trips, sizes near the symbols' cross-entropy, the operating point,
codes, and every kind of bad file refused with one clear message."""

from __future__ import annotations

import copy
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lyra_core.cli import main
from lyra_core.discovery import load_plugins
from lyra_core.errors import LyraError
from lyra_core.inference.files import encode_codes
from lyra_core.services import bitstream
from lyra_core.services.compress import cross_entropy_bits, open_codec, step_for_kbps
from lyra_core.services.model import load_model

from .helpers import train_spec
from .test_inference import TINY

RATE = TINY["data"]["sample_rate"]
CODES = {"type": "residual_fsq", "dim": 4, "levels": [4, 4, 4, 4], "n_stages": 2}
# SNAC's quantizer in small: three codebooks at 1/4, 1/2 and 1 code per latent frame.
MULTI_SCALE = {"type": "rvq", "dim": 4, "n_codebooks": 3, "codebook_size": 16, "codebook_dim": 2}
MULTI_SCALE |= {"strides": [4, 2, 1]}

pytestmark = pytest.mark.usefixtures("small_and_eager")


def trained(folder: Path, name: str, bottleneck: dict | None = None) -> Path:
    spec = copy.deepcopy(TINY) | {"name": name}
    if bottleneck is not None:
        spec["model"]["bottleneck"] = bottleneck
        spec["losses"] = [{"type": "l1"}]
    return train_spec(spec, folder, name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("compress")
    return {
        "latent": trained(folder, "latent"),
        "codes": trained(folder, "codes", CODES),
        "multi_scale": trained(folder, "multi_scale", MULTI_SCALE),
    }


@pytest.fixture(scope="module")
def codec(runs):
    return open_codec(load_model(runs["latent"], load_plugins(), "cpu"), log=lambda _: None)


def music(seconds: float, seed: int = 0) -> torch.Tensor:
    """Two tones with a noisy onset: something the latent has to follow."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-t % 1.0)
    x += 0.05 * np.random.default_rng(seed).standard_normal(t.size) * (t % 1.0 < 0.05)
    return torch.from_numpy(x.astype(np.float32))[None, None]


@pytest.mark.parametrize("step", [0.05, 0.2, 1.0])
def test_a_file_decodes_to_exactly_the_in_process_decoding_of_its_symbols(codec, step):
    audio = music(4.0)
    step = codec.check_step(step)
    data = codec.encode(audio, step)
    symbols = codec.symbols(audio, step)
    assert torch.equal(
        codec.decode(data, "x.lyra"), codec.decode_symbols(symbols, step, audio.shape[-1])
    )


def test_the_file_costs_the_cross_entropy_plus_a_header_and_a_few_bytes_a_chunk(codec):
    audio = music(8.0)
    step = codec.check_step(0.2)
    data = codec.encode(audio, step)
    entropy = cross_entropy_bits(codec, codec.symbols(audio, step), step) / 8
    chunks = -(-codec.frames(audio.shape[-1]) // codec.chunk_frames)
    header = len(codec.header(audio.shape[-1], step).to_bytes())
    assert entropy < len(data) <= entropy + header + 14 * chunks


def test_a_finer_step_costs_more_and_sounds_closer(codec):
    audio = music(4.0)
    sizes, errors = [], []
    for step in (1.0, 0.3, 0.1):
        data = codec.encode(audio, step)
        sizes.append(len(data))
        errors.append(float((codec.decode(data, "x") - codec.decode_symbols(
            codec.symbols(audio, 1e-3), 1e-3, audio.shape[-1])).abs().mean()))  # fmt: skip
    assert sizes[0] < sizes[1] < sizes[2]
    assert errors[0] > errors[2]


def test_kbps_finds_the_finest_step_that_meets_the_rate(codec):
    audio = music(4.0)
    step = step_for_kbps(codec, audio, 6.0, "x")
    assert len(codec.encode(audio, step)) * 8 / 4.0 <= 6000
    assert len(codec.encode(audio, step * 0.97)) * 8 / 4.0 > 6000 * 0.98
    with pytest.raises(LyraError, match=r"--kbps 0.01: x needs at least .* give a higher"):
        step_for_kbps(codec, audio, 0.01, "x")


@pytest.mark.parametrize("samples", [1, 3 * RATE])
def test_silence_and_a_single_sample_round_trip(codec, samples):
    audio = torch.zeros(1, 1, samples)
    decoded = codec.decode(codec.encode(audio), "x")
    assert decoded.shape == audio.shape
    assert torch.equal(decoded, codec.decode_symbols(codec.symbols(audio, 0.2), 0.2, samples))


def test_codes_round_trip_and_are_coded_below_their_fixed_width(runs):
    loaded = load_model(runs["codes"], load_plugins(), "cpu")
    codec = open_codec(loaded, log=lambda _: None)
    audio = music(4.0)
    symbols = codec.symbols(audio, 1.0)
    assert symbols.shape[0] == 2  # the two stages' codebooks
    data = codec.encode(audio)
    assert torch.equal(codec.decode(data, "x"), codec.decode_symbols(symbols, 1.0, audio.shape[-1]))
    assert len(data) * 8 < symbols.size * np.log2(loaded.quantizer.codebook_size)
    with pytest.raises(LyraError, match="operating point training fixed"):
        codec.encode(audio, 0.5)


def test_multi_scale_codes_go_a_column_per_coarsest_frame_and_round_trip(runs):
    """SNAC-like codes (1, 2 and 4 codes per coarsest frame) are 7 rows; the file decodes to
    exactly the in-process decoding of the model's own codes."""
    loaded = load_model(runs["multi_scale"], load_plugins(), "cpu")
    codec = open_codec(loaded, log=lambda _: None)
    audio = music(4.0)
    _, codes = encode_codes(loaded, audio, codec.chunking)
    coarse, middle, fine = (c[0].numpy() for c in codes)
    symbols = codec.symbols(audio, 1.0)
    assert symbols.shape == (7, coarse.size) and fine.size == 4 * coarse.size
    assert np.array_equal(symbols[0], coarse) and np.array_equal(symbols[1], middle[0::2])
    assert np.array_equal(symbols[6], fine[3::4])
    with torch.inference_mode():
        z = loaded.quantizer.dequantize([c.long() for c in codes])
    assert torch.equal(codec.latent(symbols, 1.0), z)  # the rows give back the model's codes
    data = codec.encode(audio)
    decoded = codec.decode(data, "x")
    assert decoded.shape == audio.shape
    assert torch.equal(decoded, codec.decode_symbols(symbols, 1.0, audio.shape[-1]))
    assert len(data) * 8 < symbols.size * np.log2(16)


def test_the_fit_is_cached_with_the_run_and_refitted_for_a_new_checkpoint(runs, codec):
    cache = runs["latent"] / "compress" / "factorized.npz"
    assert cache.is_file()
    again = open_codec(load_model(runs["latent"], load_plugins(), "cpu"), log=print)
    assert again.state_id == codec.state_id


# -- bad files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(codec) -> bytes:
    return codec.encode(music(4.0))


def damaged(good: bytes, at: int) -> bytes:
    data = bytearray(good)
    data[at] ^= 0x10
    return bytes(data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda g: b"", "is empty"),
        (lambda g: b"RIFF" + g[4:], "is not a .lyra file"),
        (lambda g: g[:4] + bytes([9]) + g[5:], "format version 9; this Lyra reads version 1"),
        (lambda g: g[:20], "it is truncated"),
        (lambda g: g[: len(g) - 7], "it is truncated"),
        (lambda g: damaged(g, 14), "the header is damaged"),
        (lambda g: damaged(g, len(g) - 20), r"chunk \d of \d .* is damaged \(checksum mismatch\)"),
        (lambda g: g + b"\0", "unexpected bytes after the last"),
    ],
)
def test_a_bad_file_is_one_clear_error(codec, good, make, message):
    with pytest.raises(LyraError, match=message):
        codec.decode(make(good), "bad.lyra")


def test_a_file_of_another_model_is_refused_naming_both(runs, good):
    there = open_codec(load_model(runs["codes"], load_plugins(), "cpu"), log=lambda _: None)
    with pytest.raises(LyraError, match=r"encoded by another model .* not by this run's 'codes'"):
        there.decode(good, "x.lyra")


def test_the_header_layout_is_the_documented_one(codec, good):
    assert good[:4] == b"LYRA" and good[4] == bitstream.VERSION
    assert good[5:9] == bytes.fromhex(codec.loaded.spec_hash)[:4]
    header = bitstream.read_header(bitstream.Reader(io.BytesIO(good), "x"))
    assert (header.sample_rate, header.channels, header.length) == (RATE, 1, 4 * RATE)
    assert header.step == pytest.approx(0.2) and header.quantization == bitstream.GRID
    end = len(header.to_bytes())
    assert struct.unpack("<I", good[end - 4 : end])[0] == __import__("zlib").crc32(good[: end - 4])


def test_the_commands_write_decode_and_refuse_with_exit_2(runs, tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(wav, music(3.0)[0, 0].numpy(), RATE)
    run = str(runs["latent"])
    assert main(["encode", str(wav), "--run", run, "--bitstream", "-o", str(tmp_path)]) == 0
    assert "kbps" in capsys.readouterr().out
    lyra = tmp_path / "in.lyra"
    assert main(["decode", str(lyra), "--run", run, "-o", str(tmp_path / "out")]) == 0
    assert sf.info(tmp_path / "out" / "in.wav").frames == 3 * RATE
    lyra.write_bytes(lyra.read_bytes()[:30])
    assert main(["decode", str(lyra), "--run", run, "-o", str(tmp_path / "out2")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "in.wav").exists()
    args = ["encode", str(wav), "--run", run, "--bitstream", "--kbps", "0.01", "-o", "x"]
    assert main(args) == 2
    assert "give a higher --kbps" in capsys.readouterr().err


def test_evaluate_reports_the_measured_rate_and_rd_sweeps_beside_opus(runs, tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(wav, music(3.0)[0, 0].numpy(), RATE)
    run = str(runs["latent"])
    report = tmp_path / "r.json"
    args = ["evaluate", str(wav), "--run", run, "--bitstream", "--no-visqol", "--json", str(report)]
    assert main(args) == 0
    measured = json.loads(report.read_text())["measured_bits_per_second"]
    size = len(open_codec(load_model(run, load_plugins(), "cpu")).encode(music(3.0)))
    assert measured == pytest.approx(size * 8 / 3.0, rel=1e-3)
    assert "as .lyra files" in capsys.readouterr().out
    assert (
        main(["evaluate", str(wav), "--run", run, "--rd", str(tmp_path / "rd"), "--no-visqol"]) == 0
    )
    points = json.loads((tmp_path / "rd" / "rd.json").read_text())
    rates = [p["kbps"] for p in points["model"]]
    assert all(r <= p["target_kbps"] for r, p in zip(rates, points["model"], strict=True))
    assert rates == sorted(rates) and len(points["opus"]) == 5
    assert (tmp_path / "rd" / "rd.png").stat().st_size > 0
