"""Exact JSON round-trip for optimizer scalars and param-group settings (tuples, scalar tensors, floats)."""

from __future__ import annotations

from typing import Any

import torch

from slimlab.core.errors import SlimlabError


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str, where: str = "") -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise SlimlabError(f"{where}: unknown dtype '{name}'")
    return dtype


def to_json_value(value: Any) -> Any:
    """Python floats are written with repr (exact); float32 scalars are exact as doubles too."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise SlimlabError(f"optimizer setting is a tensor of shape {tuple(value.shape)}; only single-value "
                               "tensors can be stored")
        return {"__tensor__": {"dtype": dtype_name(value.dtype), "value": value.item(), "shape": list(value.shape)}}
    if isinstance(value, tuple):
        return {"__tuple__": [to_json_value(item) for item in value]}
    if isinstance(value, list):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {"__dict__": [[to_json_value(key), to_json_value(item)] for key, item in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SlimlabError(f"optimizer setting of type {type(value).__name__} ({value!r}) cannot be stored")


def from_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            spec = value["__tensor__"]
            return torch.tensor(spec["value"], dtype=dtype_from_name(spec["dtype"])).reshape(spec["shape"])
        if "__tuple__" in value:
            return tuple(from_json_value(item) for item in value["__tuple__"])
        if "__dict__" in value:
            return {from_json_value(key): from_json_value(item) for key, item in value["__dict__"]}
    if isinstance(value, list):
        return [from_json_value(item) for item in value]
    return value


def is_header_scalar(value: Any) -> bool:
    """Scalars (the per-parameter ``step``, flags) go in the header; tensors with data go in streams."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.dim() == 0
    if isinstance(value, (tuple, list)):  # a list of tensors with data is not a scalar: it is refused by name
        return all(is_header_scalar(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, str))
