"""Entropy coding of integer symbol streams with rANS (via ``constriction``).

Stream layout (little-endian), self-describing so a stream can be decoded on its own:

    u32 symbol_count | u16 alphabet_size | alphabet_size x u32 counts | rANS words (u32)...

The model is static per stream: the empirical symbol counts, turned into probabilities the same way on
both sides (float64 counts / total), so the coder is deterministic. A stream whose symbols are all equal
stores no rANS words at all. Binary masks are coded as a 2-symbol stream, which reaches the order-0
entropy H(p) per position (e.g. 0.469 bits for p = 0.1).
"""

from __future__ import annotations

import struct

import constriction
import numpy as np

from slimlab.core.errors import SlimlabError

_HEADER = struct.Struct("<IH")


def encode_symbols(symbols: np.ndarray, alphabet_size: int) -> bytes:
    """Code integer symbols in ``[0, alphabet_size)``; returns a self-describing byte stream."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int32).reshape(-1)
    if not 1 <= alphabet_size <= 65535:
        raise ValueError(f"alphabet_size must be in [1, 65535], got {alphabet_size}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet_size):
        raise ValueError(f"symbols must lie in [0, {alphabet_size}), got [{symbols.min()}, {symbols.max()}]")
    if symbols.size >= 2**32:
        raise ValueError("a symbol stream holds fewer than 2**32 symbols; split the tensor")
    counts = np.bincount(symbols, minlength=alphabet_size).astype(np.uint32)
    parts = [_HEADER.pack(symbols.size, alphabet_size), counts.tobytes()]
    if np.count_nonzero(counts) > 1:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, _model(counts))
        parts.append(coder.get_compressed().astype("<u4").tobytes())
    return b"".join(parts)


def decode_symbols(data: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns an int32 array."""
    data = memoryview(data)
    if len(data) < _HEADER.size:
        raise SlimlabError("entropy stream is shorter than its header")
    count, alphabet_size = _HEADER.unpack_from(data, 0)
    table_end = _HEADER.size + 4 * alphabet_size
    if len(data) < table_end:
        raise SlimlabError("entropy stream is shorter than its frequency table")
    counts = np.frombuffer(data[_HEADER.size:table_end], dtype="<u4").astype(np.uint32)
    if int(counts.sum()) != count:
        raise SlimlabError(f"entropy stream frequency table sums to {int(counts.sum())}, header says {count}")
    present = np.flatnonzero(counts)
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    if present.size == 1:
        return np.full(count, present[0], dtype=np.int32)
    words = np.frombuffer(data[table_end:], dtype="<u4").astype(np.uint32)
    if words.size == 0:
        raise SlimlabError("entropy stream has no payload")
    decoder = constriction.stream.stack.AnsCoder(words)
    return np.asarray(decoder.decode(_model(counts), count), dtype=np.int32)


def encode_mask(mask: np.ndarray) -> bytes:
    """Code a boolean mask position by position (order-0 binary model)."""
    return encode_symbols(np.asarray(mask, dtype=bool).reshape(-1).view(np.uint8), 2)


def decode_mask(data: bytes | memoryview) -> np.ndarray:
    return decode_symbols(data).astype(bool)


def empirical_entropy_bits(symbols: np.ndarray, alphabet_size: int) -> float:
    """Order-0 entropy of the symbols, in bits per symbol (the bound the coder approaches)."""
    counts = np.bincount(np.asarray(symbols).reshape(-1), minlength=alphabet_size).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    probabilities = counts[counts > 0] / total
    return float(-(probabilities * np.log2(probabilities)).sum())


def _model(counts: np.ndarray):
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)
