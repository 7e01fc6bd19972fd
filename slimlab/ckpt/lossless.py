"""Bit-exact tensor coding: IEEE fields for float tensors, byte planes + zstd for the rest.

Float tensors of at least ``float_fields.MIN_ELEMENTS`` elements use :mod:`slimlab.ckpt.float_fields`
(temporal delta against the reference, or sign / exponent / mantissa with an optional context). Other
tensors use byte planes:

Floats of similar magnitude share their high bytes (sign, exponent, top mantissa bits); putting byte k of
every element together makes those planes highly compressible while the noisy low planes pass through
zstd nearly untouched (and quickly). XOR against the previous checkpoint's tensor zeroes the bits that did
not change. The decoder checks the result against a stored SHA-256 of the original bytes.

Byte-plane stream: u8 item size | u8 xor flag | item_size x u64 plane lengths | zstd planes...
(the first byte tells the two stream kinds apart: item sizes are 1-8, float-field tags 0xF1 / 0xF2).
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import torch
import zstandard

from slimlab.ckpt import float_fields
from slimlab.core.errors import SlimlabError

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def tensor_bytes(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's raw little-endian bytes as a uint8 array (no copy for contiguous CPU tensors)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy()


def encode_lossless(tensor: torch.Tensor, reference: torch.Tensor | None = None, level: int = 3,
                    context: np.ndarray | None = None) -> tuple[bytes, str]:
    """Return (stream, sha256 of the tensor bytes).

    ``reference``: the same tensor in the parent checkpoint (temporal delta); ``context``: (N,) int64 symbols
    the decoder will know, e.g. ``float_fields.exponent_field`` of another tensor (used when there is no
    reference). Both are optional.
    """
    data = tensor_bytes(tensor)
    digest = hashlib.sha256(data).hexdigest()
    same = reference is not None and reference.shape == tensor.shape and reference.dtype == tensor.dtype
    if float_fields.supports(tensor):
        if same:
            return float_fields.encode_delta(tensor, reference), digest
        return float_fields.encode_fields(tensor, context), digest
    item = max(1, tensor.element_size()) if tensor.dtype != torch.bool else 1
    words = data.view(_UINT[item])
    if same:
        words = np.bitwise_xor(words, tensor_bytes(reference).view(_UINT[item]))
    planes = words.view(np.uint8).reshape(-1, item).T  # (item, N): plane k holds byte k of every element
    compressor = zstandard.ZstdCompressor(level=level)
    coded = [compressor.compress(np.ascontiguousarray(plane).tobytes()) for plane in planes]
    header = struct.pack(f"<BB{item}Q", item, int(same), *[len(part) for part in coded])
    return header + b"".join(coded), digest


def decode_lossless(data: bytes, dtype: torch.dtype, shape: tuple[int, ...], digest: str,
                    reference: torch.Tensor | None = None, where: str = "tensor",
                    context: np.ndarray | None = None) -> torch.Tensor:
    count = int(np.prod(shape)) if shape else 1
    if len(data) and data[0] in (float_fields.FIELDS_TAG, float_fields.DELTA_TAG):
        pattern = float_fields.decode_float(data, dtype, count, reference, context, where)
        return _checked(float_fields.patterns_to_bytes(pattern, dtype), dtype, shape, digest, where)
    item, use_xor = struct.unpack_from("<BB", data, 0)
    lengths = struct.unpack_from(f"<{item}Q", data, 2)
    offset = 2 + 8 * item
    decompressor = zstandard.ZstdDecompressor()
    planes = np.empty((item, count), dtype=np.uint8)
    for index, length in enumerate(lengths):
        plane = decompressor.decompress(data[offset:offset + length], max_output_size=count)
        planes[index] = np.frombuffer(plane, dtype=np.uint8)
        offset += length
    words = np.ascontiguousarray(planes.T).reshape(-1).view(_UINT[item])
    if use_xor:
        if reference is None or tuple(reference.shape) != tuple(shape) or reference.dtype != dtype:
            raise SlimlabError(f"{where}: coded against a reference tensor that is missing or differs")
        words = np.bitwise_xor(words, tensor_bytes(reference).view(_UINT[item]))
    return _checked(words.view(np.uint8), dtype, shape, digest, where)


def _checked(raw: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...], digest: str, where: str) -> torch.Tensor:
    if hashlib.sha256(raw).hexdigest() != digest:
        raise SlimlabError(f"{where}: decoded bytes do not match the stored SHA-256 (wrong reference or corrupted file)")
    storage_dtype = torch.uint8 if dtype == torch.bool else dtype
    if raw.size == 0:  # an empty array has no strides to view through; the tensor is all shape
        return torch.empty(shape, dtype=dtype)
    result = torch.from_numpy(raw.copy()).view(storage_dtype).reshape(shape)
    return result.to(torch.bool) if dtype == torch.bool else result
