import numpy as np
import pytest

from slimlab.core.entropy import encode_mask, encode_symbols
from slimlab.core.errors import SlimlabError
from slimlab.core.mask_coding import (decode_row_column_mask, encode_row_column_mask, matrix_shape, order0_cost_bits,
                                      rank_buckets, row_column_cost_bits)


def structured_mask(rows=96, cols=64, seed=0):
    """Keep probability = row rate * column rate: the structure |dW| * sqrt(v) scores give a mask."""
    rng = np.random.default_rng(seed)
    row_rate, col_rate = rng.uniform(0.05, 1.0, rows), rng.uniform(0.05, 1.0, cols)
    return rng.random((rows, cols)) < np.outer(row_rate, col_rate)


def test_matrix_shape_views_the_first_axis_by_the_rest():
    assert matrix_shape((3, 4, 5)) == (3, 20)
    assert matrix_shape([768, 256]) == (768, 256)
    assert matrix_shape((5,)) is None and matrix_shape(()) is None
    assert matrix_shape((1, 7)) is None and matrix_shape((7, 1)) is None


def test_rank_buckets_by_hand():
    # ranks of [0.5, 0.1, 0.9, 0.3] are [2, 0, 3, 1]; two equal groups: ranks 0-1 -> 0, ranks 2-3 -> 1
    assert rank_buckets(np.array([0.5, 0.1, 0.9, 0.3]), 2).tolist() == [1, 0, 1, 0]
    # ties keep their order (stable): the first 0.2 ranks lower
    assert rank_buckets(np.array([0.2, 0.2, 0.0]), 3).tolist() == [1, 2, 0]


@pytest.mark.parametrize("buckets", [1, 2, 4, 8])
def test_round_trip(buckets):
    mask = structured_mask()
    assert np.array_equal(decode_row_column_mask(encode_row_column_mask(mask, buckets)), mask)


def test_round_trip_of_edge_masks():
    for mask in (np.zeros((5, 3), bool), np.ones((4, 6), bool), np.eye(7, dtype=bool), structured_mask(2, 300)):
        assert np.array_equal(decode_row_column_mask(encode_row_column_mask(mask)), mask)


def test_constant_blocks_cost_only_side_information():
    # Rows 0-3 keep everything, rows 4-7 nothing: with 2 buckets both blocks per row group are constant, so no
    # rANS word is written: header 9 bytes + two length-prefixed id streams + 4 block counts of 4 bytes.
    mask = np.zeros((8, 10), dtype=bool)
    mask[:4] = True
    data = encode_row_column_mask(mask, buckets=2)
    row_ids = rank_buckets(mask.mean(axis=1), 2)      # [1, 1, 1, 1, 0, 0, 0, 0]
    col_ids = rank_buckets(mask.mean(axis=0), 2)      # equal rates: first half 0, second half 1
    expected = 9 + 4 + len(encode_symbols(row_ids, 2)) + 4 + len(encode_symbols(col_ids, 2)) + 4 * 4
    assert len(data) == expected
    assert np.array_equal(decode_row_column_mask(data), mask)


def test_structured_mask_costs_less_than_order0_and_the_estimate_is_close():
    mask = structured_mask(256, 256)
    coded_bits = 8 * len(encode_row_column_mask(mask))
    order0_bits = 8 * len(encode_mask(mask))
    assert coded_bits < 0.9 * order0_bits
    assert row_column_cost_bits(mask) == pytest.approx(coded_bits, rel=0.03)
    assert order0_cost_bits(mask) == pytest.approx(order0_bits, rel=0.03)


def test_iid_mask_gains_nothing():
    mask = np.random.default_rng(1).random((256, 256)) < 0.3
    assert row_column_cost_bits(mask) > order0_cost_bits(mask)


def test_damaged_streams_name_the_problem():
    data = encode_row_column_mask(structured_mask())
    with pytest.raises(SlimlabError, match="truncated|shorter"):
        decode_row_column_mask(data[:12])
    with pytest.raises(SlimlabError, match="shorter than its block table|bucket ids"):
        decode_row_column_mask(data[:60])
    with pytest.raises(ValueError, match="2-D"):
        encode_row_column_mask(np.zeros(5, bool))
