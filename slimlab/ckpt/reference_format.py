"""Storage of mode ``excp-ref``, as the official pipeline stores a checkpoint: float16 codebooks and dense index
arrays (0 = exact zero), two 4-bit indices per byte, compressed with xz (LZMA). The encoder and decoder share it."""

from __future__ import annotations

import lzma

import numpy as np
import torch

from slimlab.ckpt.shrink import quantize_values


def fp16_quantize(values: torch.Tensor, clusters: int, quantizer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Official storage: codebook rounded to fp16 (tiny v values flush to zero), indices to the rounded book; a
    tensor with at most ``clusters`` values is kept in fp32, as the official code stores such tensors raw."""
    indices, codebook = quantize_values(values, clusters, quantizer)
    if values.numel() <= clusters:
        return indices, codebook
    return indices, codebook.half().float()


def pack_xz(dense: torch.Tensor, bits: int) -> bytes:
    """Dense index array, two 4-bit indices per byte when bits <= 4, then LZMA (xz) as the official pipeline."""
    codes = dense.numpy().astype(np.uint8)
    if bits <= 4:
        if codes.size % 2:
            codes = np.append(codes, np.uint8(0))
        codes = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
    return lzma.compress(codes.tobytes(), preset=6)


def unpack_xz(data: bytes, bits: int, count: int) -> torch.Tensor:
    codes = np.frombuffer(lzma.decompress(data), dtype=np.uint8)
    if bits <= 4:
        codes = np.stack([codes & 0x0F, codes >> 4], axis=1).reshape(-1)
    return torch.from_numpy(codes[:count].astype(np.int64))
