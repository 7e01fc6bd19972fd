"""Binary masks of matrices coded given their row and column keep rates.

A mask chosen by a score with row and column structure (|dW| * sqrt(v): Adam's v is large along whole rows and
columns of a weight matrix) is far from i.i.d.: rows and columns keep very different fractions. Ranking rows by
their keep rate into ``buckets`` equal-size groups, and columns likewise, splits the matrix into buckets^2
blocks; each block is coded with its own static binary model, so the cost approaches
sum_blocks n_b * H(p_b) instead of N * H(p). The side information is one bucket id per row and per column plus
one count per block.

Stream layout (little-endian)::

    u8 buckets | u32 rows | u32 cols | u32 len + row bucket ids (entropy stream) | u32 len + column ids
    | buckets^2 x u32 ones per block | rANS words

Blocks are coded in row-major order of (row bucket, column bucket); within a block, positions keep their
row-major order.
"""

from __future__ import annotations

import math
import struct

import constriction
import numpy as np

from slimlab.core.entropy import decode_symbols, encode_symbols
from slimlab.core.errors import SlimlabError

_HEADER = struct.Struct("<BII")
_LENGTH = struct.Struct("<I")
TABLE_BITS_PER_BLOCK = 32


def matrix_shape(shape) -> tuple[int, int] | None:
    """The (rows, cols) view of a tensor's positions: its first axis by the rest; None for vectors and scalars."""
    shape = tuple(int(size) for size in shape)
    if len(shape) < 2 or shape[0] < 2 or math.prod(shape[1:]) < 2:
        return None
    return shape[0], math.prod(shape[1:])


def rank_buckets(rates: np.ndarray, buckets: int) -> np.ndarray:
    """Bucket id per entry: entries ranked by rate (stable) and cut into ``buckets`` equal-size groups."""
    rank = np.empty(rates.size, dtype=np.int64)
    rank[np.argsort(rates, kind="stable")] = np.arange(rates.size)
    return (rank * buckets // max(1, rates.size)).astype(np.int64)


def _binary_entropy_bits(ones: np.ndarray, totals: np.ndarray) -> float:
    """sum over groups of n * H(ones / n), in bits (0 for empty or constant groups)."""
    ones, totals = ones.astype(np.float64), totals.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(totals > 0, ones / np.maximum(totals, 1), 0.0)
        terms = -(ones * np.log2(np.where(p > 0, p, 1.0)) + (totals - ones) * np.log2(np.where(p < 1, 1 - p, 1.0)))
    return float(terms.sum())


def _block_ones(mask: np.ndarray, row_ids: np.ndarray, col_ids: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(ones, totals), each (buckets, buckets): kept positions and positions of every block."""
    col_onehot = np.zeros((mask.shape[1], buckets), dtype=np.float32)
    col_onehot[np.arange(mask.shape[1]), col_ids] = 1
    per_row = mask.astype(np.float32) @ col_onehot                      # (R, B): ones per row and column bucket
    ones = np.zeros((buckets, buckets), dtype=np.float64)
    np.add.at(ones, row_ids, per_row.astype(np.float64))
    totals = np.outer(np.bincount(row_ids, minlength=buckets), np.bincount(col_ids, minlength=buckets))
    return np.rint(ones).astype(np.int64), totals


def _ids(mask: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    return rank_buckets(mask.mean(axis=1), buckets), rank_buckets(mask.mean(axis=0), buckets)


def row_column_cost_bits(mask: np.ndarray, buckets: int = 4) -> float:
    """Estimated size in bits of :func:`encode_row_column_mask` (the entropy bound plus side information)."""
    mask = np.asarray(mask, dtype=bool)
    row_ids, col_ids = _ids(mask, buckets)
    ones, totals = _block_ones(mask, row_ids, col_ids, buckets)
    side = np.log2(buckets) * sum(mask.shape) + TABLE_BITS_PER_BLOCK * buckets * buckets + 8 * (_HEADER.size + 8)
    return _binary_entropy_bits(ones, totals) + side


def order0_cost_bits(mask: np.ndarray) -> float:
    """Estimated size in bits of the order-0 mask stream (entropy bound plus its two-count table)."""
    mask = np.asarray(mask, dtype=bool)
    return _binary_entropy_bits(np.array([np.count_nonzero(mask)]), np.array([mask.size])) + 8 * 14


def _model(zeros: int, ones: int):
    return constriction.stream.model.Categorical(np.array([zeros, ones], dtype=np.float64), perfect=False)


def encode_row_column_mask(mask: np.ndarray, buckets: int = 4) -> bytes:
    """Code a 2-D boolean mask with one binary model per (row bucket, column bucket) block."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a row/column mask is 2-D, got shape {mask.shape}")
    if not 1 <= buckets <= 255:
        raise ValueError(f"buckets must be in [1, 255], got {buckets}")
    row_ids, col_ids = _ids(mask, buckets)
    ones, totals = _block_ones(mask, row_ids, col_ids, buckets)
    parts = [_HEADER.pack(buckets, *mask.shape)]
    for ids in (row_ids, col_ids):
        stream = encode_symbols(ids, buckets)
        parts += [_LENGTH.pack(len(stream)), stream]
    parts.append(ones.astype("<u4").tobytes())
    coder = constriction.stream.stack.AnsCoder()
    blocks = [(r, c) for r in range(buckets) for c in range(buckets)]
    for r, c in reversed(blocks):  # a stack: the last block pushed is the first popped
        if 0 < ones[r, c] < totals[r, c]:
            bits = mask[np.ix_(row_ids == r, col_ids == c)].reshape(-1).astype(np.int32)
            coder.encode_reverse(bits, _model(int(totals[r, c] - ones[r, c]), int(ones[r, c])))
    parts.append(coder.get_compressed().astype("<u4").tobytes())
    return b"".join(parts)


def decode_row_column_mask(data: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode_row_column_mask`; returns the (rows, cols) boolean mask."""
    data = memoryview(data)
    try:
        buckets, rows, cols = _HEADER.unpack_from(data, 0)
        offset, ids = _HEADER.size, []
        for count in (rows, cols):
            (length,) = _LENGTH.unpack_from(data, offset)
            offset += _LENGTH.size
            if offset + length > len(data):
                raise SlimlabError("row/column mask stream is truncated inside its bucket ids")
            values = decode_symbols(data[offset:offset + length]).astype(np.int64)
            if values.size != count or (values.size and values.max() >= buckets):
                raise SlimlabError("row/column mask: bucket ids do not match the mask's shape")
            ids.append(values)
            offset += length
        table_end = offset + 4 * buckets * buckets
        if len(data) < table_end:
            raise SlimlabError("row/column mask: stream is shorter than its block table")
        ones = np.frombuffer(data[offset:table_end], dtype="<u4").astype(np.int64).reshape(buckets, buckets)
    except struct.error as error:
        raise SlimlabError(f"row/column mask stream is truncated ({error})") from error
    if (len(data) - table_end) % 4:
        raise SlimlabError("row/column mask stream is truncated inside its rANS words")
    row_ids, col_ids = ids
    totals = np.outer(np.bincount(row_ids, minlength=buckets), np.bincount(col_ids, minlength=buckets))
    if np.any(ones > totals):
        raise SlimlabError("row/column mask: a block counts more kept positions than it holds")
    words = np.frombuffer(data[table_end:], dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.stack.AnsCoder(words) if words.size else None
    mask = np.zeros((rows, cols), dtype=bool)
    for r in range(buckets):
        for c in range(buckets):
            block = np.ix_(row_ids == r, col_ids == c)
            if ones[r, c] == totals[r, c]:
                mask[block] = True
            elif ones[r, c] > 0:
                if decoder is None:
                    raise SlimlabError("row/column mask stream has no payload")
                bits = decoder.decode(_model(int(totals[r, c] - ones[r, c]), int(ones[r, c])), int(totals[r, c]))
                mask[block] = np.asarray(bits, dtype=bool).reshape(mask[block].shape)
    return mask
