"""Bit-exact coding of float tensors by IEEE-754 fields, with optional temporal delta and context.

Training state is noisy in its low mantissa bits, so what a lossless coder can win lies in the fields
with structure:
* ``fields``: sign, exponent and mantissa are split. The exponent (log2 of the magnitude) is coded with
  rANS, conditioned on a context the decoder knows, such as the exponent of Adam's second moment at the
  same position (|m| is bounded by about sqrt(v)); mantissa byte planes get zstd or raw, signs rANS or raw.
* ``delta``: weights against the previous checkpoint. Both bit patterns are mapped to ordered integers
  (a monotone, bijective map), and their difference d is coded as bit_length(|d|) (rANS, conditioned on
  the reference's exponent, which sets the size of one unit in the last place), the sign of d, and the
  bits of |d| below its leading one, packed raw. This beats XOR: XOR leaves every bit under the highest
  changed one noisy, plus carries.

Stream: u8 tag (0xF1 fields, 0xF2 delta) | u8 uses-context | u8 part count | part count x u64 lengths | parts.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
import zstandard

from slimlab.core.entropy import decode_grouped_symbols, decode_symbols, encode_grouped_symbols, encode_symbols
from slimlab.core.errors import SlimlabError

FIELDS_TAG, DELTA_TAG = 0xF1, 0xF2
LAYOUT = {torch.float32: (32, 8, 23), torch.bfloat16: (16, 8, 7), torch.float16: (16, 5, 10)}  # bits, exp, mantissa
MIN_ELEMENTS = 4096  # below this the per-context tables cost more than they save
_CHUNK = 1 << 18     # elements per bit-packing chunk (a multiple of 8, so chunks end on byte boundaries)


def supports(tensor: torch.Tensor) -> bool:
    return tensor.dtype in LAYOUT and tensor.numel() >= MIN_ELEMENTS


def bit_patterns(tensor: torch.Tensor) -> np.ndarray:
    """(N,) int64 holding each element's unsigned bit pattern."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    unsigned = {32: torch.int32, 16: torch.int16}[LAYOUT[tensor.dtype][0]]
    pattern = flat.view(unsigned).numpy().astype(np.int64)
    return pattern & ((1 << LAYOUT[tensor.dtype][0]) - 1)


def exponent_field(tensor: torch.Tensor) -> np.ndarray:
    """(N,) int64 biased exponent of each element (the context for a tensor coded after this one)."""
    _, exponent_bits, mantissa_bits = LAYOUT[tensor.dtype]
    return (bit_patterns(tensor) >> mantissa_bits) & ((1 << exponent_bits) - 1)


def encode_fields(tensor: torch.Tensor, context: np.ndarray | None = None, level: int = 1) -> bytes:
    total_bits, exponent_bits, mantissa_bits = LAYOUT[tensor.dtype]
    pattern = bit_patterns(tensor)
    sign = pattern >> (total_bits - 1)
    exponent = (pattern >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = pattern & ((1 << mantissa_bits) - 1)
    parts = [_encode_bits(sign), encode_grouped_symbols(exponent, _context(context, pattern.size))]
    parts += _encode_mantissa(mantissa, mantissa_bits, level)
    return _join(FIELDS_TAG, context is not None, parts)


def encode_delta(tensor: torch.Tensor, reference: torch.Tensor) -> bytes:
    total_bits, exponent_bits, mantissa_bits = LAYOUT[tensor.dtype]
    base = bit_patterns(reference)
    difference = _ordered(bit_patterns(tensor), total_bits) - _ordered(base, total_bits)
    magnitude = np.abs(difference)
    length = _bit_length(magnitude)  # 0 where the element did not change
    changed = length > 0
    parts = [encode_grouped_symbols(length, (base >> mantissa_bits) & ((1 << exponent_bits) - 1)),
             _encode_bits((difference[changed] < 0).astype(np.int64)),
             _pack_below_leading_one(magnitude, length, total_bits)]
    return _join(DELTA_TAG, True, parts)


def decode_float(data: bytes | memoryview, dtype: torch.dtype, count: int, reference: torch.Tensor | None,
                 context: np.ndarray | None, where: str) -> np.ndarray:
    """Bit patterns (N,) int64 of a ``fields`` or ``delta`` stream; the caller checks the SHA-256."""
    if dtype not in LAYOUT:
        raise SlimlabError(f"{where}: field coding is not defined for {dtype}")
    total_bits, exponent_bits, mantissa_bits = LAYOUT[dtype]
    tag, uses_context, parts = _split(data, where)
    try:
        if tag == FIELDS_TAG:
            if uses_context and context is None:
                raise SlimlabError(f"{where}: coded with a context tensor that was not given")
            sign = _decode_bits(parts[0], count)
            exponent = decode_grouped_symbols(parts[1], _context(context if uses_context else None, count))
            mantissa = _decode_mantissa(parts[2:], mantissa_bits, count)
            return (sign << (total_bits - 1)) | (exponent << mantissa_bits) | mantissa
        if tag == DELTA_TAG:
            if reference is None or reference.numel() != count or reference.dtype != dtype:
                raise SlimlabError(f"{where}: coded against a reference tensor that is missing or differs")
            base = bit_patterns(reference)
            length = decode_grouped_symbols(parts[0], (base >> mantissa_bits) & ((1 << exponent_bits) - 1))
            changed = np.flatnonzero(length > 0)
            negative = _decode_bits(parts[1], changed.size).astype(bool)
            difference = _unpack_below_leading_one(parts[2], length, total_bits)  # |d| so far
            difference[changed[negative]] *= -1
            return _unordered(_ordered(base, total_bits) + difference, total_bits)
    except (ValueError, struct.error, IndexError) as error:
        raise SlimlabError(f"{where}: damaged field stream ({error})") from error
    except SlimlabError as error:
        if str(error).startswith(where):
            raise
        raise SlimlabError(f"{where}: {error}") from error
    raise SlimlabError(f"{where}: unknown float stream tag {tag:#x}")


def patterns_to_bytes(pattern: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    unsigned = {32: np.uint32, 16: np.uint16}[LAYOUT[dtype][0]]
    return pattern.astype(unsigned).view(np.uint8)


# ---- pieces ------------------------------------------------------------------------------------------------
def _context(context: np.ndarray | None, count: int) -> np.ndarray:
    if context is None:
        return np.zeros(count, dtype=np.int64)
    if context.size != count:
        raise SlimlabError(f"context tensor has {context.size} elements, expected {count}")
    return context


def _ordered(pattern: np.ndarray, total_bits: int) -> np.ndarray:
    """Sign-magnitude bit patterns -> integers in the order of the float values (+0 -> 0, -0 -> -1)."""
    negative = pattern >> (total_bits - 1)  # 0 or 1
    magnitude = pattern & ((1 << (total_bits - 1)) - 1)
    return magnitude ^ -negative  # -1 - magnitude where negative (two's complement: ~x == -1 - x)


def _unordered(ordered: np.ndarray, total_bits: int) -> np.ndarray:
    return np.where(ordered < 0, (-1 - ordered) | (1 << (total_bits - 1)), ordered)


def _bit_length(values: np.ndarray) -> np.ndarray:
    """bit_length of non-negative int64 values < 2**53: frexp's exponent, exact for such integers."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _pack_below_leading_one(magnitude: np.ndarray, length: np.ndarray, total_bits: int) -> bytes:
    """For each bit length L >= 2 (ascending), the L - 1 bits under the leading one, packed MSB first."""
    out = []
    for width in range(1, total_bits):
        values = magnitude[length == width + 1] - (1 << width)  # strip the leading one
        for start in range(0, values.size, _CHUNK):
            chunk = values[start:start + _CHUNK].astype(">u4").view(np.uint8).reshape(-1, 4)  # |d| < 2**32
            out.append(np.packbits(np.unpackbits(chunk, axis=1)[:, 32 - width:]).tobytes())
    return b"".join(out)


def _unpack_below_leading_one(data: bytes | memoryview, length: np.ndarray, total_bits: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    magnitude = np.where(length > 0, np.left_shift(1, np.maximum(length - 1, 0)), 0).astype(np.int64)
    offset = 0
    for width in range(1, total_bits):
        positions = np.flatnonzero(length == width + 1)
        for start in range(0, positions.size, _CHUNK):
            rows = positions[start:start + _CHUNK]
            size = (rows.size * width + 7) // 8
            if offset + size > raw.size:
                raise SlimlabError("float delta stream is truncated")
            bits = np.unpackbits(raw[offset:offset + size])[:rows.size * width].reshape(-1, width)
            padded = np.zeros((rows.size, 32), dtype=np.uint8)
            padded[:, 32 - width:] = bits
            magnitude[rows] += np.packbits(padded, axis=1).view(">u4").reshape(-1).astype(np.int64)
            offset += size
    if offset != raw.size:
        raise SlimlabError("float delta stream has trailing bytes")
    return magnitude


def _encode_bits(bits: np.ndarray) -> bytes:
    """A 0/1 stream: rANS when it saves at least 1% over one raw bit each (signs of noisy values rarely do)."""
    packed = np.packbits(bits.astype(np.uint8)).tobytes()
    coded = encode_symbols(bits, 2) if bits.size else b""
    return b"A" + coded if bits.size and len(coded) < 0.99 * len(packed) else b"P" + packed


def _decode_bits(data: bytes | memoryview, count: int) -> np.ndarray:
    kind, body = bytes(data[:1]), data[1:]
    if kind == b"A":
        bits = decode_symbols(body).astype(np.int64)
    elif kind == b"P":
        bits = np.unpackbits(np.frombuffer(body, dtype=np.uint8))[:count].astype(np.int64)
    else:
        raise SlimlabError(f"unknown bit-stream kind {kind!r}")
    if bits.size != count:
        raise SlimlabError(f"bit stream holds {bits.size} entries, expected {count}")
    return bits


def _encode_mantissa(mantissa: np.ndarray, mantissa_bits: int, level: int) -> list[bytes]:
    """Byte planes of the mantissa from the top (the top one holds mantissa_bits mod 8 bits, or 8), each with
    zstd or raw, whichever is smaller: the top bits are slightly skewed, the rest is noise."""
    top_bits = mantissa_bits % 8 or 8
    compressor = zstandard.ZstdCompressor(level=level)
    parts = []
    for shift in range(mantissa_bits - top_bits, -1, -8):
        plane = ((mantissa >> shift) & 0xFF).astype(np.uint8).tobytes()
        packed = compressor.compress(plane)
        parts.append(b"Z" + packed if len(packed) < len(plane) else b"R" + plane)
    return parts


def _decode_mantissa(parts: list[memoryview], mantissa_bits: int, count: int) -> np.ndarray:
    top_bits = mantissa_bits % 8 or 8
    shifts = list(range(mantissa_bits - top_bits, -1, -8))
    if len(parts) != len(shifts):
        raise SlimlabError("float field stream has the wrong number of mantissa planes")
    mantissa = np.zeros(count, dtype=np.int64)
    for part, shift in zip(parts, shifts):
        kind, body = bytes(part[:1]), part[1:]
        plane = zstandard.ZstdDecompressor().decompress(body, max_output_size=count) if kind == b"Z" else body
        values = np.frombuffer(plane, dtype=np.uint8)
        if values.size != count:
            raise SlimlabError("float field stream: a mantissa plane has the wrong length")
        mantissa |= values.astype(np.int64) << shift
    return mantissa


def _join(tag: int, uses_context: bool, parts: list[bytes]) -> bytes:
    return struct.pack(f"<BBB{len(parts)}Q", tag, int(uses_context), len(parts), *map(len, parts)) + b"".join(parts)


def _split(data: bytes | memoryview, where: str) -> tuple[int, bool, list[memoryview]]:
    data = memoryview(data)
    try:
        tag, uses_context, count = struct.unpack_from("<BBB", data, 0)
        lengths = struct.unpack_from(f"<{count}Q", data, 3)
    except struct.error as error:
        raise SlimlabError(f"{where}: float stream header is truncated") from error
    offset, parts = 3 + 8 * count, []
    for length in lengths:
        if offset + length > len(data):
            raise SlimlabError(f"{where}: float stream is truncated")
        parts.append(data[offset:offset + length])
        offset += length
    return tag, bool(uses_context), parts
