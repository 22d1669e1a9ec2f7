"""The `.lyra` file format: a versioned header, then entropy-coded chunks of latent frames.

All integers are little-endian; a varint is LEB128 (7 bits a byte, low bits first, high bit set
on every byte but the last).

    offset  size  field
    0       4     magic b"LYRA"
    4       1     format version (1)
    5       4     spec id: the first 4 bytes of the model's spec hash (`lyra.spec_hash`, hex)
    9       4     model id: the first 4 bytes of SHA-256 over the model's weights
    13      var   sample rate (Hz), varint
            1     channels
            var   length in samples, varint
            var   frames per chunk, varint
            1     quantization: 0 = a continuous latent on a uniform grid, 1 = a quantizer's codes
            4     (grid only) the step, float32, in training standard deviations of each dimension
            2     entropy model: the first 2 bytes of SHA-256 of its registered name
            4     entropy model state: the first 4 bytes of SHA-256 over its fitted tables
            4     CRC-32 of every header byte before it
    then, per chunk (ceil(frames / frames per chunk) of them, the last one shorter):
            var   payload size in bytes, varint
            n     payload: the range coder's 32-bit words, little-endian, trailing zero bytes
                  dropped (a reader pads the last word with zeros)
            4     CRC-32 of the payload

The frame count follows from the length, the model's hop and delay. Chunks are coded
independently by a factorized entropy model; a conditional one (a latent prior) carries its
context across chunks. A reader can decode each chunk as it arrives; a damaged chunk fails its
checksum and is reported, never decoded.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import attrs
import numpy as np

from lyra_core.errors import LyraError

MAGIC = b"LYRA"
VERSION = 1
EXTENSION = ".lyra"
GRID, CODES = 0, 1  # quantization kinds
MAX_VARINT_BYTES = 10


def short_id(data: bytes | str, size: int = 4) -> bytes:
    """The first `size` bytes of SHA-256 of `data` (a string is hashed as UTF-8)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).digest()[:size]


@attrs.frozen
class Header:
    """What a decoder needs before the first chunk, and what identifies the model."""

    spec_id: bytes
    model_id: bytes
    sample_rate: int
    channels: int
    length: int
    chunk_frames: int
    quantization: int
    step: float
    entropy_name: bytes
    entropy_state: bytes

    def to_bytes(self) -> bytes:
        out = bytearray(MAGIC)
        out += bytes([VERSION]) + self.spec_id + self.model_id
        out += varint(self.sample_rate) + bytes([self.channels]) + varint(self.length)
        out += varint(self.chunk_frames) + bytes([self.quantization])
        if self.quantization == GRID:
            out += struct.pack("<f", self.step)
        out += self.entropy_name + self.entropy_state
        return bytes(out + struct.pack("<I", zlib.crc32(out)))


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class Reader:
    """Bytes from a binary stream, each read checked, for error messages with an offset."""

    def __init__(self, stream: BinaryIO, name: str):
        self.stream, self.name, self.offset = stream, name, 0
        self.taken: bytearray | None = bytearray()  # the header's bytes, for its checksum

    def take(self, size: int, what: str) -> bytes:
        data = self.stream.read(size)
        if len(data) < size:
            raise LyraError(
                f"{self.name}: the file ends at byte {self.offset + len(data)}, inside {what}: "
                "it is truncated (copy it again or re-encode)"
            )
        self.offset += size
        if self.taken is not None:
            self.taken += data
        return data

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value = 0
        for i in range(MAX_VARINT_BYTES):
            byte = self.byte(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise LyraError(f"{self.name}: byte {self.offset}: {what} is not a valid number")


def read_header(reader: Reader) -> Header:
    name = reader.name
    magic = reader.stream.read(4)
    reader.offset, reader.taken = len(magic), bytearray(magic)
    if magic != MAGIC:
        what = "is empty" if not magic else "is not a .lyra file (it does not start with LYRA)"
        raise LyraError(f"{name}: {what}; give a file that `lyra encode --bitstream` wrote")
    version = reader.byte("the format version")
    if version != VERSION:
        raise LyraError(
            f"{name}: format version {version}; this Lyra reads version {VERSION} "
            "(encode the audio again with this version, or use the Lyra that wrote it)"
        )
    spec_id, model_id = reader.take(4, "the spec id"), reader.take(4, "the model id")
    rate, channels = reader.varint("the sample rate"), reader.byte("the channel count")
    length, chunk = reader.varint("the length"), reader.varint("the frames per chunk")
    quantization = reader.byte("the quantization")
    if quantization not in (GRID, CODES):
        raise LyraError(f"{name}: unknown quantization {quantization}: the header is damaged")
    step = struct.unpack("<f", reader.take(4, "the step"))[0] if quantization == GRID else 0.0
    entropy_name = reader.take(2, "the entropy model id")
    entropy_state = reader.take(4, "the entropy model state")
    expected = zlib.crc32(bytes(reader.taken))
    reader.taken = None
    if struct.unpack("<I", reader.take(4, "the header checksum"))[0] != expected:
        raise LyraError(f"{name}: the header is damaged (checksum mismatch); the file is corrupt")
    if chunk < 1 or channels < 1 or rate < 1:
        raise LyraError(f"{name}: the header is damaged (a zero rate, channel or chunk count)")
    return Header(
        spec_id, model_id, rate, channels, length, chunk, quantization, step, entropy_name,
        entropy_state,
    )  # fmt: skip


def chunk_bytes(words: np.ndarray) -> bytes:
    """A chunk as stored: varint size, the coder's words without trailing zero bytes, CRC-32."""
    payload = words.astype("<u4").tobytes().rstrip(b"\0")
    return varint(len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))


def read_chunks(reader: Reader, count: int) -> Iterator[np.ndarray]:
    """Each chunk's coder words in turn, checked against its checksum as it is read."""
    for i in range(count):
        where = f"chunk {i + 1} of {count}"
        size = reader.varint(f"{where}'s size")
        start = reader.offset
        payload = reader.take(size, where)
        crc = struct.unpack("<I", reader.take(4, f"{where}'s checksum"))[0]
        if zlib.crc32(payload) != crc:
            raise LyraError(
                f"{reader.name}: {where} (bytes {start}-{start + size}) is damaged (checksum "
                "mismatch); the file is corrupt: copy it again or re-encode"
            )
        padded = payload + b"\0" * (-len(payload) % 4)
        yield np.frombuffer(padded, dtype="<u4").astype(np.uint32)
    if reader.stream.read(1):
        raise LyraError(
            f"{reader.name}: unexpected bytes after the last of {count} chunk(s) at byte "
            f"{reader.offset}: the file is damaged or not one file"
        )
