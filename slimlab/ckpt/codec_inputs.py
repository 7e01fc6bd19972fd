"""What the lossy codec checks before it codes a tensor: Adam moments present and shaped like their weight,
every value finite, v never negative; and the raw size of the optimizer state it is measured against."""

from __future__ import annotations

import math
from typing import Any

import torch

from slimlab.core.errors import SlimlabError

MOMENT_KEYS = ("exp_avg", "exp_avg_sq")


def optimizer_tensor_bytes(optimizer) -> int:
    """Bytes of every optimizer tensor as stored uncompressed (the weights are counted while encoding)."""
    return sum(value.numel() * value.element_size() for entry in optimizer.state.values()
               for value in entry.values() if isinstance(value, torch.Tensor))


def adam_moments(optimizer, index: int | None, tensor: torch.Tensor, where: str) -> dict[str, Any] | None:
    """The optimizer entry of a parameter when it holds both Adam moments (shapes checked), else None."""
    entry = optimizer.state.get(index) if optimizer is not None and index is not None else None
    if entry is None or not all(isinstance(entry.get(k), torch.Tensor) for k in MOMENT_KEYS):
        return None
    check_moment_shapes(entry, tensor, where)
    return entry


def check_finite(tensor: torch.Tensor, entry: dict[str, Any], keyframe: bool, where: str) -> None:
    """Lossy coding thresholds, clusters and takes logs of these values: NaN or inf would be dropped silently
    or break the codebook, so such a checkpoint is refused (lossless mode stores any bit pattern).

    A float64 sum of narrower floats is finite exactly when every value is (it cannot overflow), and costs one
    reduction pass instead of isfinite's bool tensor plus a second pass."""
    checked = {"exp_avg": entry["exp_avg"], "exp_avg_sq": entry["exp_avg_sq"]}
    if not keyframe:
        checked["weight"] = tensor
    for key, values in checked.items():
        if not values.is_floating_point():
            continue
        finite = bool(torch.isfinite(values).all()) if values.dtype == torch.float64 else \
            math.isfinite(float(values.sum(dtype=torch.float64)))
        if not finite:
            raise SlimlabError(f"{where}: {key} holds NaN or inf values; lossy coding needs finite values "
                               f"(compress this checkpoint with --mode lossless)")
        if key == "exp_avg_sq" and values.numel() and float(values.min()) < 0:
            raise SlimlabError(f"{where}: exp_avg_sq holds negative values, which Adam never writes; the optimizer "
                               f"state is damaged (compress it with --mode lossless to keep it as it is)")


def check_moment_shapes(entry, tensor, where) -> None:
    for key in MOMENT_KEYS:
        if entry[key].numel() != tensor.numel():
            raise SlimlabError(f"{where}: optimizer '{key}' has shape {tuple(entry[key].shape)} but the weight has "
                               f"{tuple(tensor.shape)}; the parameter names do not match the optimizer")
