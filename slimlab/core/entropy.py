"""Entropy coding of integer symbol streams with rANS (via ``constriction``).

Stream layout (little-endian), self-describing so a stream can be decoded on its own:

    u32 symbol_count | u16 alphabet_size | alphabet_size x u32 counts | rANS words (u32)...

The model is static per stream: the empirical symbol counts, turned into probabilities the same way on
both sides (float64 counts / total), so the coder is deterministic. A stream whose symbols are all equal
stores no rANS words at all.

Binary masks reach the order-0 entropy H(p) per position (e.g. 0.469 bits for p = 0.1). Since slimlab-excp
format 5 they are coded as packed bytes, eight positions per rANS symbol, under the byte distribution that
i.i.d. Bernoulli(p) bits induce, P(byte) = p^k (1 - p)^(8 - k) with k its number of ones; p = ones / positions
is the only side information, so there is no 256-entry table, and the coder does an eighth of the work:

    u32 positions | u16 0 (marks a packed mask) | u32 ones | rANS words (u32)...

Older mask streams (a 2-symbol stream, alphabet field 2) are still decoded.
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


_PACKED_MASK = struct.Struct("<IHI")  # positions, 0, ones
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)  # (256,) ones per byte


def encode_mask(mask: np.ndarray) -> bytes:
    """Code a boolean mask as packed bytes under the Bernoulli byte model of its own rate of ones."""
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if mask.size >= 2**32:
        raise ValueError("a mask holds fewer than 2**32 positions; split the tensor")
    ones = int(np.count_nonzero(mask))
    header = _PACKED_MASK.pack(mask.size, 0, ones)
    if ones in (0, mask.size):
        return header
    packed = np.packbits(mask)  # (ceil(N / 8),) uint8; the padding bits of the last byte are zeros
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(packed.astype(np.int32), _bernoulli_byte_model(ones, mask.size))
    return header + coder.get_compressed().astype("<u4").tobytes()


def decode_mask(data: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode_mask`; also reads the 2-symbol mask streams of earlier formats."""
    data = memoryview(data)
    if len(data) >= _HEADER.size and _HEADER.unpack_from(data, 0)[1] != 0:
        return decode_symbols(data).astype(bool)
    if len(data) < _PACKED_MASK.size:
        raise SlimlabError("mask stream is shorter than its header")
    positions, _, ones = _PACKED_MASK.unpack_from(data, 0)
    if ones > positions:
        raise SlimlabError(f"mask stream claims {ones} ones in {positions} positions")
    if ones in (0, positions):
        return np.full(positions, ones > 0, dtype=bool)
    words = np.frombuffer(data[_PACKED_MASK.size:], dtype="<u4").astype(np.uint32)
    if words.size == 0:
        raise SlimlabError("mask stream has no payload")
    decoder = constriction.stream.stack.AnsCoder(words)
    packed = np.asarray(decoder.decode(_bernoulli_byte_model(ones, positions), (positions + 7) // 8), dtype=np.uint8)
    mask = np.unpackbits(packed, count=positions).astype(bool)
    if int(np.count_nonzero(mask)) != ones:
        raise SlimlabError(f"mask stream decodes to {int(np.count_nonzero(mask))} ones, its header says {ones}")
    return mask


def _bernoulli_byte_model(ones: int, positions: int):
    """P(byte) = p^k (1 - p)^(8 - k), k = popcount(byte): computed identically by encoder and decoder."""
    p = ones / positions
    probabilities = p ** _POPCOUNT * (1.0 - p) ** (8 - _POPCOUNT)  # (256,) float64, every entry > 0
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def empirical_entropy_bits(symbols: np.ndarray, alphabet_size: int) -> float:
    """Order-0 entropy of the symbols, in bits per symbol (the bound the coder approaches)."""
    counts = np.bincount(np.asarray(symbols).reshape(-1), minlength=alphabet_size).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    probabilities = counts[counts > 0] / total
    return float(-(probabilities * np.log2(probabilities)).sum())


def _context_groups(contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stable order grouping equal contexts, and each group's value, start and size (ascending values)."""
    if contexts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    low, high = int(contexts.min()), int(contexts.max())
    if high - low < 65536:  # numpy sorts 16-bit keys with a stable radix sort: linear time
        keys = (contexts - low).astype(np.uint16)
        order = np.argsort(keys, kind="stable")
        histogram = np.bincount(keys)
        present = np.flatnonzero(histogram)
        counts = histogram[present]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return order, present + low, starts, counts
    order = np.argsort(contexts, kind="stable")
    values, starts, counts = np.unique(contexts[order], return_index=True, return_counts=True)
    return order, values, starts, counts


def _model(counts: np.ndarray):
    return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)


_GROUP = struct.Struct("<qIqI")  # context value, symbol count, lowest symbol, table size


def encode_grouped_symbols(symbols: np.ndarray, contexts: np.ndarray) -> bytes:
    """Code ``symbols`` with one static rANS model per context value (order-0 within each group).

    Conditioning on a context the decoder already knows (the same position in another tensor, say) costs the
    conditional entropy H(symbol | context) plus one small table per distinct context. Layout:
    ``u32 groups | groups x (i64 context, u32 count, i64 low, u32 size, size x u32 counts) | rANS words``.
    Groups follow ascending context order; within a group, symbols keep their positional order.
    """
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    contexts = np.asarray(contexts, dtype=np.int64).reshape(-1)
    if symbols.shape != contexts.shape:
        raise ValueError(f"symbols ({symbols.size}) and contexts ({contexts.size}) differ in length")
    order, values, starts, counts = _context_groups(contexts)
    grouped = symbols[order]
    tables, models = [struct.pack("<I", len(values))], []
    for value, start, count in zip(values.tolist(), starts.tolist(), counts.tolist()):
        segment = grouped[start:start + count]
        low, high = int(segment.min()), int(segment.max())
        table = np.bincount(segment - low, minlength=high - low + 1).astype(np.uint32)
        tables.append(_GROUP.pack(value, count, low, table.size) + table.tobytes())
        models.append((segment - low, table) if np.count_nonzero(table) > 1 else None)
    coder = constriction.stream.stack.AnsCoder()
    for model in reversed(models):  # a stack: the last group pushed is the first popped
        if model is not None:
            coder.encode_reverse(model[0].astype(np.int32), _model(model[1]))
    return b"".join(tables) + coder.get_compressed().astype("<u4").tobytes()


def decode_grouped_symbols(data: bytes | memoryview, contexts: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_grouped_symbols` given the same contexts; returns int64 symbols."""
    data = memoryview(data)
    contexts = np.asarray(contexts, dtype=np.int64).reshape(-1)
    order, values, starts, counts = _context_groups(contexts)
    try:
        (group_count,) = struct.unpack_from("<I", data, 0)
        offset, groups = 4, []
        for _ in range(group_count):
            value, count, low, size = _GROUP.unpack_from(data, offset)
            offset += _GROUP.size
            table = np.frombuffer(data[offset:offset + 4 * size], dtype="<u4").astype(np.uint32)
            offset += 4 * size
            groups.append((value, count, low, table))
    except struct.error as error:
        raise SlimlabError(f"grouped entropy stream is truncated ({error})") from error
    if [(g[0], g[1]) for g in groups] != list(zip(values.tolist(), counts.tolist())):
        raise SlimlabError("grouped entropy stream does not match its context tensor (wrong reference?)")
    words = np.frombuffer(data[offset:], dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.stack.AnsCoder(words) if words.size else None
    grouped = np.empty(contexts.size, dtype=np.int64)
    for (value, count, low, table), start in zip(groups, starts.tolist()):
        if int(table.sum()) != count or table.size == 0:
            raise SlimlabError(f"grouped entropy stream: the table of context {value} is damaged")
        if np.count_nonzero(table) == 1:
            grouped[start:start + count] = low + int(np.flatnonzero(table)[0])
            continue
        if decoder is None:
            raise SlimlabError("grouped entropy stream has no payload")
        grouped[start:start + count] = low + np.asarray(decoder.decode(_model(table), count), dtype=np.int64)
    symbols = np.empty_like(grouped)
    symbols[order] = grouped
    return symbols
