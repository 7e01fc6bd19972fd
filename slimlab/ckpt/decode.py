"""Decode ``.excp`` files: weights through a lineage (keyframe -> ... -> file), moments from the file alone."""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any, Callable, Iterator

import torch
import zstandard

from slimlab.ckpt import float_fields
from slimlab.ckpt.codec import MOMENT_KEYS
from slimlab.ckpt.delta_v import merge_log_second_moment, parent_log_second_moment
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.lossless import decode_lossless
from slimlab.ckpt.reference_format import unpack_xz
from slimlab.ckpt.state import CheckpointState, OptimizerState
from slimlab.ckpt.values import dtype_from_name, from_json_value
from slimlab.core.entropy import decode_mask, decode_symbols
from slimlab.core.mask_coding import decode_row_column_mask, matrix_shape
from slimlab.core.errors import SlimlabError
from slimlab.core.masked import scatter


@contextlib.contextmanager
def malformed_entry(where: str) -> Iterator[None]:
    """Name the tensor when an entry of a checked header still lacks a field or holds a wrong type (the footer's
    digest only proves the file is as written, not that slimlab wrote it)."""
    try:
        yield
    except (KeyError, TypeError, IndexError, ValueError, struct.error, zstandard.ZstdError) as error:
        raise SlimlabError(f"{where}: the entry is malformed ({type(error).__name__}: {error}); the file is damaged "
                           "or was not written by slimlab") from error


def decode_weight(reader: ContainerReader, name: str, base: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return (weight, support mask or None) of tensor ``name``; ``base`` is the parent's decoded weight."""
    with malformed_entry(f"{reader.path}: tensor '{name}'"):
        return _decode_weight(reader, name, base)


def _decode_weight(reader: ContainerReader, name: str, base: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    entry = reader.header["tensors"].get(name)
    where = f"{reader.path}: tensor '{name}'"
    if entry is None:
        raise SlimlabError(f"{where}: not in this file")
    dtype = dtype_from_name(entry["dtype"], where)
    shape = tuple(entry["shape"])
    if entry["coding"] == "lossless":
        return decode_lossless(reader.read(entry["stream"], f"tensor '{name}'"), dtype, shape, entry["sha256"],
                               base, where), None
    count = math.prod(shape)
    if base is None and entry["residual"]:
        raise SlimlabError(f"{where}: is a residual, but no reference weights were given")
    if base is not None and (tuple(base.shape) != shape or base.dtype != dtype):
        raise SlimlabError(f"{where}: reference has shape {tuple(base.shape)} {base.dtype} but this file expects "
                           f"{shape} {dtype}; wrong reference")
    base_flat = base.reshape(-1).float() if entry["residual"] else torch.zeros(count)
    if entry["coding"] == "excp":
        support = _support(reader, entry, f"tensor '{name}' support")
        codebook = torch.tensor(entry["codebook"], dtype=torch.float32)
        indices = _symbols(reader, entry["indices"], int(support.sum()), f"tensor '{name}' indices", codebook.numel())
        delta = torch.zeros(count)
        if indices.numel():
            scatter(delta, support, codebook[indices])
    elif entry["coding"] == "excp-ref":
        dense = unpack_xz(reader.read(entry["indices"], f"tensor '{name}' indices"), entry["bits"], count)
        codebook = torch.cat([torch.zeros(1), torch.tensor(entry["codebook_fp16"], dtype=torch.float32)])
        delta = codebook[dense.clamp(max=codebook.numel() - 1)]
        support = dense > 0
    else:
        raise SlimlabError(f"{where}: unknown coding '{entry['coding']}'")
    return (base_flat + delta).to(dtype).reshape(shape), support


def decode_second_moment(reader: ContainerReader, name: str, parent: torch.Tensor | None) -> torch.Tensor | None:
    """Decoded v of tensor ``name`` (``parent``: the parent file's decoded v); None for excp-ref or no v."""
    with malformed_entry(f"{reader.path}: optimizer state of '{name}'"):
        return _decode_second_moment(reader, name, parent)


def _decode_second_moment(reader: ContainerReader, name: str, parent: torch.Tensor | None) -> torch.Tensor | None:
    optimizer = reader.header["optimizer"]
    if optimizer is None or name not in optimizer["param_names"]:
        return None
    index = str(optimizer["param_names"].index(name))
    record = optimizer["state"].get(index, {}).get("moments")
    if record is None or record["coding"] == "excp-ref":
        return None
    if record["coding"] == "lossless":
        return _lossless_moment(reader, record, "exp_avg_sq", f"optimizer tensor '{name}'", parent, None)
    support = None
    if record["scope"] == "support":
        entry = reader.header["tensors"][record["tensor"]]
        support = _support(reader, entry, f"tensor '{record['tensor']}' support")
    return decode_moments(reader, index, record, lambda _: support, {}, lambda _: parent)["exp_avg_sq"]


def _lossless_moment(reader, record, key, where, parent, second) -> torch.Tensor:
    item = record[key]
    context = None
    if item.get("context") == "exp_avg_sq":
        context = float_fields.exponent_field(second)
    elif item.get("context") == "parent_exp_avg_sq":
        if parent is None:
            raise SlimlabError(f"{reader.path}: {where} {key}: coded against the parent's second moment, which is "
                               f"missing (decode this file through its chain)")
        context = float_fields.exponent_field(parent)
    return decode_lossless(reader.read(item["stream"], f"{where} {key}"), dtype_from_name(item["dtype"]),
                           tuple(record["shape"]), item["sha256"], None, f"{reader.path}: {where} {key}", context)


def decode_moments(reader: ContainerReader, index: str, record: dict[str, Any],
                   support_of: Callable[[str], torch.Tensor | None], stats: dict[str, int],
                   parent_second_moment: Callable[[str], torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
    where = f"optimizer parameter {index}"
    shape = tuple(record["shape"])
    count = math.prod(shape)
    if record["coding"] == "lossless":
        parent = None
        if record["exp_avg_sq"].get("context") == "parent_exp_avg_sq" and parent_second_moment is not None:
            parent = parent_second_moment(record["tensor"])
        second = _lossless_moment(reader, record, "exp_avg_sq", where, parent, None)  # v first: m is coded given v
        return {"exp_avg": _lossless_moment(reader, record, "exp_avg", where, parent, second), "exp_avg_sq": second}
    m_dtype, v_dtype = (dtype_from_name(name) for name in record["dtypes"])
    if record["coding"] == "excp-ref":
        m_hat, v_hat = (_dense_values(reader, record[key], count, f"{where} {key}") for key in ("m", "v"))
    else:
        scope_mask = torch.ones(count, dtype=torch.bool) if record["scope"] == "full" else support_of(record["tensor"])
        if scope_mask is None:
            raise SlimlabError(f"{reader.path}: {where}: moments refer to tensor '{record['tensor']}' which has no support")
        keep = torch.zeros(count, dtype=torch.bool)
        scatter(keep, scope_mask, _mask(reader, record["mask"], int(scope_mask.sum()), f"{where} moment mask"))
        kept = int(keep.sum())
        counts = {"m": kept, "v": kept}
        parent_log_v = None
        if "v_delta" in record:  # log v coded against the parent's decoded v where the parent has one
            parent_log_v = parent_log_second_moment(parent_second_moment, record["tensor"], keep)
            if parent_log_v is None:
                raise SlimlabError(f"{reader.path}: {where}: v is coded against the parent's second moment, which "
                                   f"is missing (decode this file through its chain)")
            known = ~torch.isnan(parent_log_v)
            counts["v"], counts["v_delta"] = kept - int(known.sum()), int(known.sum())
        values = {}
        for key, count_of_key in counts.items():
            codebook = torch.tensor(record[key]["codebook"], dtype=torch.float32)
            indices = _symbols(reader, record[key]["indices"], count_of_key, f"{where} {key}", codebook.numel())
            values[key] = codebook[indices] if count_of_key else torch.zeros(0)
        values["v"] = merge_log_second_moment(parent_log_v, values["v"], values.get("v_delta"))
        if record["v_domain"] == "log":
            values["v"] = torch.exp(values["v"])
        m_hat, v_hat = torch.zeros(count), torch.zeros(count)
        scatter(m_hat, keep, values["m"])
        scatter(v_hat, keep, values["v"])
    # Invariant: Adam divides m by sqrt(v) + eps, so m without v would explode; count and repair.
    orphaned = (m_hat != 0) & (v_hat <= 0)
    stats["orphaned_first_moments"] = stats.get("orphaned_first_moments", 0) + int(orphaned.sum())
    if record["coding"] == "excp":
        m_hat[orphaned] = 0
    return {"exp_avg": m_hat.to(m_dtype).reshape(shape), "exp_avg_sq": v_hat.to(v_dtype).reshape(shape)}


def decode_checkpoint(reader: ContainerReader, base_weight: Callable[[str], torch.Tensor | None],
                      stats: dict[str, int] | None = None,
                      base_second_moment: Callable[[str], torch.Tensor | None] | None = None) -> CheckpointState:
    """Rebuild the full checkpoint; ``base_weight(name)`` gives the parent's decoded weight (delta files) and
    ``base_second_moment(name)`` the parent's exact v (lossless chains code v given it)."""
    stats = {} if stats is None else stats
    header = reader.header
    model: dict[str, torch.Tensor] = {}
    supports: dict[str, torch.Tensor | None] = {}
    for name in header["tensors"]:
        model[name], supports[name] = decode_weight(reader, name, base_weight(name) if header["parent_id"] else None)
    optimizer = None
    if header["optimizer"] is not None:
        optimizer_header = header["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for index, record in optimizer_header["state"].items():
            with malformed_entry(f"{reader.path}: optimizer parameter {index}"):
                entry: dict[str, Any] = {key: from_json_value(value) for key, value in record["scalars"].items()}
                for key, tensor_entry in record["tensors"].items():
                    entry[key] = decode_lossless(reader.read(tensor_entry["stream"], f"optimizer {index} {key}"),
                                                 dtype_from_name(tensor_entry["dtype"]), tuple(tensor_entry["shape"]),
                                                 tensor_entry["sha256"], None, f"{reader.path}: optimizer {index} {key}")
                if "moments" in record:
                    entry.update(decode_moments(reader, index, record["moments"], supports.get, stats,
                                                base_second_moment if header["parent_id"] else None))
                state[int(index)] = _in_original_order(entry, record)
        with malformed_entry(f"{reader.path}: optimizer param_groups"):
            optimizer = OptimizerState(list(optimizer_header["param_names"]), state,
                                       from_json_value(optimizer_header["param_groups"]))
    files = {path: reader.read(entry, f"file '{path}'") for path, entry in header["files"].items()}
    extra = reader.read(header["extra"], "extra") if header.get("extra") else b""
    return CheckpointState(model, optimizer, dict(header["aliases"]), files, header["layout"], header["model_file"],
                           extra, header.get("step"))


def _in_original_order(entry: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    # torch's Adam writes step, exp_avg, exp_avg_sq; keep that order so the state dict looks untouched.
    order = ["step", *MOMENT_KEYS]
    return {key: entry[key] for key in sorted(entry, key=lambda k: order.index(k) if k in order else len(order))}


def _dense_values(reader, record, count, what) -> torch.Tensor:
    dense = unpack_xz(reader.read(record["indices"], what), record["bits"], count)
    codebook = torch.cat([torch.zeros(1), torch.tensor(record["codebook_fp16"], dtype=torch.float32)])
    return codebook[dense.clamp(max=codebook.numel() - 1)]


def _support(reader, entry, what) -> torch.Tensor:
    """M_w of a tensor entry, order-0 or coded given its row and column keep rates (format version 4)."""
    coding = entry.get("support_coding", "order0")
    if coding == "order0":
        return _mask(reader, entry["support"], math.prod(entry["shape"]), what)
    if coding != "row_column":
        raise SlimlabError(f"{reader.path}: {what}: unknown mask coding '{coding}'")
    return _mask(reader, entry["support"], math.prod(entry["shape"]), what, matrix_shape(entry["shape"]))


def _mask(reader, entry, count, what, matrix: tuple[int, int] | None = None) -> torch.Tensor:
    """An order-0 mask stream, or (``matrix`` given) a row/column-coded one of that 2-D shape, flattened."""
    data = reader.read(entry, what)
    try:
        mask = decode_mask(data) if matrix is None else decode_row_column_mask(data)
        if matrix is not None and mask.shape != matrix:
            raise SlimlabError(f"is a {mask.shape} matrix, expected {matrix}")
        mask = mask.reshape(-1)
    except SlimlabError as error:  # the entropy coder's message knows neither the file nor the tensor
        raise SlimlabError(f"{reader.path}: {what}: {error}") from error
    if mask.size != count:
        raise SlimlabError(f"{reader.path}: {what}: has {mask.size} positions, expected {count}")
    return torch.from_numpy(mask)


def _symbols(reader, entry, count, what, alphabet) -> torch.Tensor:
    data = reader.read(entry, what)
    try:
        symbols = decode_symbols(data)
    except SlimlabError as error:
        raise SlimlabError(f"{reader.path}: {what}: {error}") from error
    if symbols.size != count or (symbols.size and symbols.max() >= max(1, alphabet)):
        raise SlimlabError(f"{reader.path}: {what}: stream does not match its mask or codebook")
    return torch.from_numpy(symbols.astype("int64"))
