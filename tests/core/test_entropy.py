import math

import numpy as np
import pytest

from slimlab.core.entropy import decode_mask, decode_symbols, empirical_entropy_bits, encode_mask, encode_symbols
from slimlab.core.errors import SlimlabError


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
    payload_bits = (len(data) - (4 + 2 + 4)) * 8 / mask.size  # header: positions, marker, ones
    assert entropy <= payload_bits + 1e-9  # nothing beats the order-0 bound
    assert payload_bits < entropy * 1.01 + 64 / mask.size  # within 1% of it (plus the 32-bit state flush)


def test_mask_stream_layout_and_degenerate_masks():
    # 10 positions, 3 ones: header u32 10 | u16 0 | u32 3, then whole u32 rANS words
    data = encode_mask(np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=bool))
    assert data[:10] == (10).to_bytes(4, "little") + b"\0\0" + (3).to_bytes(4, "little")
    assert (len(data) - 10) % 4 == 0 and len(data) > 10
    for constant in (np.zeros(13, dtype=bool), np.ones(13, dtype=bool), np.zeros(0, dtype=bool)):
        coded = encode_mask(constant)
        assert len(coded) == 10  # no payload
        assert np.array_equal(decode_mask(coded), constant)


def test_rare_bytes_stay_codable_and_old_two_symbol_masks_decode():
    mask = np.zeros(100_000, dtype=bool)
    mask[:8] = True  # a 0xFF byte at p = 8e-5: probability ~4e-33 before the coder's leaky quantization
    assert np.array_equal(decode_mask(encode_mask(mask)), mask)
    old = encode_symbols(mask.view(np.uint8), 2)  # how formats 1-4 coded masks
    assert np.array_equal(decode_mask(old), mask)


def test_corrupted_mask_header_names_the_problem():
    data = bytearray(encode_mask(np.random.default_rng(2).random(1000) < 0.3))
    data[6:10] = (2000).to_bytes(4, "little")  # more ones than positions
    with pytest.raises(SlimlabError, match="ones in 1000 positions"):
        decode_mask(bytes(data))
    data[6:10] = (1).to_bytes(4, "little")  # a different rate: decodes to another count of ones
    with pytest.raises(SlimlabError, match="ones"):
        decode_mask(bytes(data))


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
