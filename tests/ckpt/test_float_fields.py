import numpy as np
import pytest
import torch

from slimlab.ckpt import float_fields
from slimlab.ckpt.chain import CheckpointChain
from slimlab.ckpt.codec import ExcpCodec
from slimlab.ckpt.lossless import decode_lossless, encode_lossless
from slimlab.ckpt.state import CheckpointState, OptimizerState
from slimlab.core.errors import SlimlabError

SPECIAL = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-40, -1e-40, 3.0e38, -3.0e38, 1.0, -1.0]


def noisy(dtype, count=6000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(count, generator=generator) * 0.02
    values[:len(SPECIAL)] = torch.tensor(SPECIAL)
    return values.to(dtype)


def test_ordered_integers_by_hand():
    # fp32 bit patterns: +0 = 0, -0 = 0x80000000, 1.0 = 0x3F800000, -1.0 = 0xBF800000.
    pattern = np.array([0, 0x80000000, 0x3F800000, 0xBF800000], dtype=np.int64)
    ordered = float_fields._ordered(pattern, 32)
    assert ordered.tolist() == [0, -1, 0x3F800000, -1 - 0x3F800000]
    assert np.array_equal(float_fields._unordered(ordered, 32), pattern)


def test_ordered_integers_follow_the_float_order():
    values = torch.tensor([-3.0e38, -1.0, -1e-40, -0.0, 0.0, 1e-40, 1.0, 3.0e38])
    ordered = float_fields._ordered(float_fields.bit_patterns(values), 32)
    assert np.all(np.diff(ordered) > 0)
    assert ordered[3:5].tolist() == [-1, 0]  # -0 and +0 are neighbours


def test_bit_length_by_hand():
    values = np.array([0, 1, 2, 3, 4, 255, 256, 2**32 - 1])
    assert float_fields._bit_length(values).tolist() == [0, 1, 2, 2, 3, 8, 9, 32]


def as_bits(tensor):
    return tensor.view(torch.int32 if tensor.dtype == torch.float32 else torch.int16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fields_and_delta_are_bit_exact(dtype):
    tensor, reference = noisy(dtype, seed=0), noisy(dtype, seed=1)
    tensor[20:40] = reference[20:40]  # unchanged elements: bit length 0
    context = float_fields.exponent_field(reference)
    for kwargs, tag in (({}, float_fields.FIELDS_TAG), ({"reference": reference}, float_fields.DELTA_TAG),
                        ({"context": context}, float_fields.FIELDS_TAG)):
        stream, digest = encode_lossless(tensor, **kwargs)
        assert stream[0] == tag
        decoded = decode_lossless(stream, dtype, tuple(tensor.shape), digest, **kwargs)
        assert torch.equal(as_bits(decoded), as_bits(tensor))


def test_small_and_integer_tensors_keep_byte_planes():
    for tensor in (torch.randn(100), torch.arange(10_000)):
        stream, digest = encode_lossless(tensor)
        assert stream[0] == tensor.element_size()  # the byte-plane stream starts with the item size
        assert torch.equal(decode_lossless(stream, tensor.dtype, tuple(tensor.shape), digest), tensor)


def test_delta_beats_xor_on_small_updates():
    base = noisy(torch.float32, 50_000)
    updated = base + 1e-4 * torch.randn(base.shape, generator=torch.Generator().manual_seed(3))
    delta, _ = encode_lossless(updated, base)
    xor = np.bitwise_xor(updated.numpy().view(np.uint32), base.numpy().view(np.uint32))
    import zstandard
    planes = xor.view(np.uint8).reshape(-1, 4).T
    xor_bytes = sum(len(zstandard.ZstdCompressor(level=3).compress(p.tobytes())) for p in planes)
    assert len(delta) < xor_bytes


def test_wrong_reference_or_missing_context_is_named():
    tensor, reference = noisy(torch.float32, seed=0), noisy(torch.float32, seed=1)
    stream, digest = encode_lossless(tensor, reference)
    with pytest.raises(SlimlabError, match="w: .*(reference|SHA-256|context)"):
        decode_lossless(stream, torch.float32, tuple(tensor.shape), digest, noisy(torch.float32, seed=2), "w")
    with pytest.raises(SlimlabError, match="reference tensor that is missing"):
        decode_lossless(stream, torch.float32, tuple(tensor.shape), digest, None, "w")
    stream, digest = encode_lossless(tensor, context=float_fields.exponent_field(reference))
    with pytest.raises(SlimlabError, match="context tensor that was not given"):
        decode_lossless(stream, torch.float32, tuple(tensor.shape), digest, None, "m")
    with pytest.raises(SlimlabError, match="m: "):
        decode_lossless(stream[:len(stream) // 2], torch.float32, tuple(tensor.shape), digest, None, "m",
                        float_fields.exponent_field(reference))


def adam_like_states(count=3, size=8192):
    """Checkpoints of one tensor with Adam-like moments that drift slowly, as in training."""
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(size, generator=generator) * 0.02
    m, v = torch.zeros(size), torch.zeros(size)
    states = []
    for index in range(count):
        for _ in range(5):
            gradient = torch.randn(size, generator=generator) * 1e-3
            m, v = 0.9 * m + 0.1 * gradient, 0.95 * v + 0.05 * gradient ** 2
            weight = weight - 1e-3 * m / (v.sqrt() + 1e-8)
        optimizer = OptimizerState(["w"], {0: {"step": torch.tensor(5.0 * (index + 1)), "exp_avg": m.clone(),
                                               "exp_avg_sq": v.clone()}},
                                   [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0]}])
        states.append(CheckpointState({"w": weight.clone()}, optimizer))
    return states


def test_lossless_chain_codes_v_given_the_parent_and_decodes_from_disk(tmp_path):
    states = adam_like_states()
    chain = CheckpointChain(tmp_path, ExcpCodec(mode="lossless"))
    for step, state in enumerate(states, start=1):
        chain.append(state, step)
    record = chain.load(1)  # keyframe: no parent, v coded alone, m given v
    assert torch.equal(record.optimizer.state[0]["exp_avg_sq"], states[0].optimizer.state[0]["exp_avg_sq"])
    from slimlab.ckpt.container import ContainerReader
    with ContainerReader(chain.path_for(3)) as reader:
        moments = reader.header["optimizer"]["state"]["0"]["moments"]
    assert moments["exp_avg_sq"]["context"] == "parent_exp_avg_sq"
    assert moments["exp_avg"]["context"] == "exp_avg_sq"
    decoded = CheckpointChain(tmp_path).load(3)  # a fresh chain object: the parent's v comes from disk
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(decoded.optimizer.state[0][key], states[2].optimizer.state[0][key]), key
    assert torch.equal(decoded.model["w"], states[2].model["w"])
