import math

import numpy as np

from slimlab.core.entropy import decode_mask, decode_symbols, empirical_entropy_bits, encode_mask, encode_symbols


def test_round_trip_random_symbols():
    rng = np.random.default_rng(0)
    symbols = rng.integers(0, 15, size=10_001).astype(np.int32)
    assert np.array_equal(decode_symbols(encode_symbols(symbols, 15)), symbols)


def test_constant_stream_is_header_only():
    # 4-byte count + 2-byte alphabet size + 15 counts of 4 bytes = 66 bytes, no rANS words.
    data = encode_symbols(np.full(1000, 7), 15)
    assert len(data) == 4 + 2 + 15 * 4
    assert np.array_equal(decode_symbols(data), np.full(1000, 7))


def test_empty_stream():
    assert decode_symbols(encode_symbols(np.zeros(0, dtype=np.int32), 3)).size == 0


def test_mask_costs_close_to_binary_entropy():
    rng = np.random.default_rng(1)
    mask = rng.random(200_000) < 0.1
    data = encode_mask(mask)
    assert np.array_equal(decode_mask(data), mask)
    p = mask.mean()
    entropy = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))  # ~0.469 bits for p = 0.1
    payload_bits = (len(data) - (4 + 2 + 8)) * 8 / mask.size
    assert entropy <= payload_bits + 1e-9  # nothing beats the order-0 bound
    assert payload_bits < entropy * 1.01 + 64 / mask.size  # within 1% of it (plus the 32-bit state flush)


def test_empirical_entropy_by_hand():
    # Symbols [0, 0, 1, 2]: p = (1/2, 1/4, 1/4) -> H = 0.5*1 + 2*0.25*2 = 1.5 bits.
    assert empirical_entropy_bits(np.array([0, 0, 1, 2]), 3) == 1.5


def test_grouped_symbols_round_trip_with_contexts():
    from slimlab.core.entropy import decode_grouped_symbols, encode_grouped_symbols
    rng = np.random.default_rng(2)
    contexts = rng.integers(-3, 40, size=20_000)
    symbols = (contexts * 7 + rng.integers(0, 3, size=contexts.size)) % 50
    data = encode_grouped_symbols(symbols, contexts)
    assert np.array_equal(decode_grouped_symbols(data, contexts), symbols)


def test_grouped_symbols_cost_the_conditional_entropy():
    from slimlab.core.entropy import decode_grouped_symbols, encode_grouped_symbols
    # The symbol is a function of the context: H(symbol | context) = 0, so no rANS payload is needed even
    # though the order-0 entropy of the symbols is log2(4) = 2 bits. The stream is the tables alone:
    # 4 bytes of group count + 4 groups x (24-byte group header: i64 context, u32 count, i64 low, u32 size; + one 4-byte count).
    contexts = np.tile(np.arange(4), 1000)
    symbols = 3 * contexts + 1
    data = encode_grouped_symbols(symbols, contexts)
    assert len(data) == 4 + 4 * (24 + 4)
    assert np.array_equal(decode_grouped_symbols(data, contexts), symbols)


def test_grouped_symbols_refuse_other_contexts():
    import pytest

    from slimlab.core.entropy import decode_grouped_symbols, encode_grouped_symbols
    from slimlab.core.errors import SlimlabError
    contexts = np.arange(100) % 5
    data = encode_grouped_symbols(np.arange(100) % 3, contexts)
    with pytest.raises(SlimlabError, match="does not match its context"):
        decode_grouped_symbols(data, np.arange(100) % 4)
