"""ExcpCodec: encode one checkpoint into a ``.excp`` container.

Modes
* ``excp`` (default): residual against the *reconstructed* reference, weight-momentum joint shrinking,
  k-means on the kept values (log domain for v, fp32 codebooks), the support coded once (mask M_w over N
  positions, order-0 or given its rows' and columns' keep rates, whichever is smaller; M_o as a sub-mask over
  M_w), rANS for every index stream. Keyframes store weights losslessly.
* ``excp-ref``: the official code's semantics: dense 4-bit index arrays (0 = exact zero), fp16
  codebooks, v in the linear domain, xz (LZMA) over the nibble arrays, raw keyframe; the in-run baseline.
* ``lossless``: every tensor bit-exact (float fields: weights as ordered-integer deltas against the reference,
  v given the reference's v, m given v; see ``float_fields``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from slimlab.ckpt import float_fields
from slimlab.ckpt.codec_inputs import MOMENT_KEYS, adam_moments, check_finite, optimizer_tensor_bytes
from slimlab.ckpt.container import ContainerWriter
from slimlab.ckpt.delta_v import merge_log_second_moment, parent_log_second_moment
from slimlab.ckpt.lossless import encode_lossless
from slimlab.ckpt.reference_format import fp16_quantize, pack_xz
from slimlab.ckpt.shrink import (SCORE_POWERS, ScoreHistogram, ShrinkSettings, adam_scores, adam_support, momentum_mask,
                                 quantize_values, weight_support)
from slimlab.ckpt.state import CheckpointState
from slimlab.ckpt.values import dtype_name, is_header_scalar, to_json_value
from slimlab.core.entropy import encode_mask, encode_symbols
from slimlab.core.mask_coding import encode_row_column_mask, matrix_shape, order0_cost_bits, row_column_cost_bits
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_open
from slimlab.core.masked import scatter, select

MODES = ("excp", "excp-ref", "lossless")
SCORES = ("excp", "adam", "curvature")


class Reference(Protocol):
    """The reconstructed parent checkpoint: its content id and its decoded weights."""
    content_id: str
    depth: int

    def weight(self, name: str) -> torch.Tensor | None: ...

    def second_moment(self, name: str) -> torch.Tensor | None:
        """The parent's decoded Adam v of tensor ``name`` (exact for lossless parents; None if not stored)."""


@dataclass
class EncodeResult:
    content_id: str
    reconstructed: dict[str, torch.Tensor]   # W_hat_t, the reference for the next checkpoint
    raw_bytes: int
    coded_bytes: int
    seconds: float
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    second_moments: dict[str, torch.Tensor] = field(default_factory=dict)  # decoded v (lossless, delta-v), by tensor


@dataclass(frozen=True)
class ExcpCodec:
    mode: str = "excp"
    alpha: float = 5e-5
    beta: float = 2.0
    bits: tuple[int, int, int] = (4, 4, 4)     # for residual weights, first and second moment
    v_domain: str = "log"                      # "log" (fp32 codebook) or "linear-fp16" (the official choice)
    quantizer: str = "kmeans"                  # or "uniform" (ablation)
    residual: bool = True                      # False codes weights directly (ablation)
    momentum_shrinking: bool = True            # False keeps moments wherever the residual is kept (ablation)
    score: str = "excp"                        # "adam" / "curvature": keep the top keep_fraction of |dW| * sqrt(v)
                                               # / |dW| * v^(1/4) over the whole checkpoint
    keep_fraction: float = 0.1                 # budget of those scores (fraction of all residual entries)
    delta_v: bool = False                      # code log(v_t) - log(v_hat_{t-1}) where the parent kept v (ablation)
    zstd_level: int = 3
    keyframe_every: int = 10

    def __post_init__(self):
        if self.mode not in MODES:
            raise SlimlabError(f"codec mode '{self.mode}' is not one of {', '.join(MODES)}")
        if isinstance(self.bits, int):  # one width for residual, m and v
            object.__setattr__(self, "bits", (self.bits,) * 3)
        if len(self.bits) != 3 or not all(isinstance(b, int) and 1 <= b <= 8 for b in self.bits):
            raise SlimlabError(f"bits must be three integers in [1, 8], got {self.bits}")
        if self.v_domain not in ("log", "linear-fp16"):
            raise SlimlabError(f"v_domain '{self.v_domain}' is not 'log' or 'linear-fp16'")
        if self.score not in SCORES:
            raise SlimlabError(f"score '{self.score}' is not one of {', '.join(SCORES)}")
        if self.score in SCORE_POWERS and self.mode != "excp":
            raise SlimlabError(f"score '{self.score}' applies to mode 'excp' only, not '{self.mode}'")
        if self.delta_v and (self.mode != "excp" or self.v_domain != "log"):
            raise SlimlabError("delta_v applies to mode 'excp' with v_domain 'log' only")
        if not 0 < self.keep_fraction <= 1:
            raise SlimlabError(f"keep_fraction must be in (0, 1], got {self.keep_fraction}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise SlimlabError(f"{name} must be a finite number >= 0, got {value}")
        if self.quantizer not in ("kmeans", "uniform"):
            raise SlimlabError(f"quantizer '{self.quantizer}' is not 'kmeans' or 'uniform'")
        if not 1 <= self.zstd_level <= 22:
            raise SlimlabError(f"zstd_level must be in [1, 22], got {self.zstd_level}")
        if self.keyframe_every < 1:
            raise SlimlabError("keyframe_every must be at least 1")

    @property
    def shrink(self) -> ShrinkSettings:
        clusters = [2 ** b - 1 for b in self.bits]
        return ShrinkSettings(self.alpha, self.beta, 2.5, *clusters, self.quantizer, self.momentum_shrinking)

    def settings(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "bits": list(self.bits)}

    def encode(self, state: CheckpointState, out_path: str | Path, reference: Reference | None = None,
               step: int | None = None, source: str = "", keep_reconstruction: bool = True) -> EncodeResult:
        """Write ``state`` to ``out_path`` (atomically) coded against ``reference`` (None: a keyframe).

        Tensors are read, coded and written one at a time; ``keep_reconstruction=False`` also drops each
        decoded weight once written (it is only needed as the reference of a following checkpoint).
        """
        started = time.perf_counter()
        keyframe = reference is None
        optimizer = state.optimizer
        index_of = {name: i for i, name in enumerate(optimizer.param_names) if name} if optimizer else {}
        reconstructed: dict[str, torch.Tensor] = {}
        second_moments: dict[str, torch.Tensor] = {}
        raw_bytes = optimizer_tensor_bytes(optimizer) if optimizer else 0
        threshold = None
        if self.mode == "excp" and self.score in SCORE_POWERS and not keyframe:
            threshold = self._adam_threshold(state, reference, index_of, source or str(out_path))
        with atomic_open(out_path) as stream:
            writer = ContainerWriter(stream)
            tensors: dict[str, Any] = {}
            moments_header: dict[int, Any] = {}
            for name, tensor in state.model.items():
                where = f"{source or out_path}: tensor '{name}'"
                base = self._base_for(name, tensor, reference, where)
                index = index_of.get(name)
                entry = adam_moments(optimizer, index, tensor, where)
                has_moments = entry is not None
                if has_moments and self.mode != "lossless" and not (self.mode == "excp-ref" and keyframe):
                    check_finite(tensor, entry, keyframe, where)  # what is about to be coded lossily
                if self.mode == "lossless" or keyframe or not has_moments:
                    tensors[name] = self._lossless(writer, tensor, base, "w")
                    reconstructed[name] = tensor.detach().clone()  # the input may be a live parameter
                    support = None
                elif self.mode == "excp":
                    tensors[name], reconstructed[name], support = self._joint_weight(writer, tensor, base, entry,
                                                                                     threshold)
                else:
                    tensors[name], reconstructed[name], support = self._reference_weight(writer, tensor, base, entry)
                if has_moments:
                    moments_header[index], decoded_v = self._moments(writer, entry, support, keyframe, name,
                                                                     reference)
                    if decoded_v is not None and keep_reconstruction:
                        second_moments[name] = decoded_v  # what the decoder rebuilds: the next file's context
                raw_bytes += tensor.numel() * tensor.element_size()
                if not keep_reconstruction:
                    del reconstructed[name]
            optimizer_header = self._optimizer_header(writer, optimizer, moments_header, source or str(out_path)) \
                if optimizer else None
            files = {path: {**writer.add(data, "files"), "size": len(data)} for path, data in state.files.items()}
            extra = writer.add(state.extra, "files") if state.extra else None
            header = {
                "step": step if step is not None else state.step, "is_keyframe": keyframe,
                "parent_id": None if keyframe else reference.content_id,
                "depth": 0 if keyframe else reference.depth + 1, "codec": self.settings(),
                "layout": state.layout, "model_file": state.model_file, "aliases": state.aliases,
                "tensors": tensors, "optimizer": optimizer_header, "files": files, "extra": extra,
                "raw_bytes": raw_bytes,
            }
            content_id = writer.finish(header)
            coded = writer.offset
        return EncodeResult(content_id, reconstructed, header["raw_bytes"], coded, time.perf_counter() - started,
                            dict(writer.bytes_by_kind), second_moments)

    # ---- weights -------------------------------------------------------------------------------------------
    def _base_for(self, name, tensor, reference, where) -> torch.Tensor | None:
        if reference is None:
            return None
        base = reference.weight(name)
        if base is None:
            raise SlimlabError(f"{where}: not present in the reference checkpoint; compress it as a keyframe")
        if tuple(base.shape) != tuple(tensor.shape) or base.dtype != tensor.dtype:
            raise SlimlabError(f"{where}: has shape {tuple(tensor.shape)} {dtype_name(tensor.dtype)} but the reference "
                               f"has {tuple(base.shape)} {dtype_name(base.dtype)}")
        return base

    def _lossless(self, writer, tensor, base, kind, context=None):
        data, digest = encode_lossless(tensor, base, self.zstd_level, context)
        return {"coding": "lossless", "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape),
                "sha256": digest, "stream": writer.add(data, kind)}

    def _residual(self, tensor, base) -> tuple[torch.Tensor, torch.Tensor]:
        base_flat = base.reshape(-1).float() if self.residual else torch.zeros(tensor.numel())
        return tensor.detach().reshape(-1).float() - base_flat, base_flat  # (N,), (N,)

    def _adam_threshold(self, state, reference, index_of, source) -> float:
        """First pass of scores 'adam' / 'curvature': one threshold on |dW| * v^power over every delta-coded tensor."""
        histogram = ScoreHistogram()
        for name, tensor in state.model.items():
            where = f"{source}: tensor '{name}'"
            entry = adam_moments(state.optimizer, index_of.get(name), tensor, where)
            if entry is None:
                continue  # coded losslessly, outside the budget
            residual, _ = self._residual(tensor, self._base_for(name, tensor, reference, where))
            histogram.add(adam_scores(residual, entry["exp_avg_sq"], SCORE_POWERS[self.score]))
        return histogram.threshold(self.keep_fraction)

    def _joint_weight(self, writer, tensor, base, moments, threshold=None):
        residual, base_flat = self._residual(tensor, base)
        if threshold is None:
            support = weight_support(residual, moments["exp_avg_sq"].reshape(-1), self.shrink)  # (N,) bool
        else:
            support = adam_support(residual, moments["exp_avg_sq"], threshold, SCORE_POWERS[self.score])
        indices, codebook = quantize_values(select(residual, support), self.shrink.clusters_w, self.quantizer)
        delta = torch.zeros_like(residual)
        if indices.numel():
            scatter(delta, support, codebook[indices])
        rebuilt = (base_flat + delta).to(tensor.dtype).reshape(tensor.shape)
        entry = {"coding": "excp", "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape),
                 "residual": self.residual, "codebook": float32_list(codebook), "kept": int(indices.numel()),
                 **support_stream(writer, support, tensor.shape),
                 "indices": writer.add(encode_symbols(indices.numpy(), max(1, codebook.numel())), "w")}
        return entry, rebuilt, support

    def _reference_weight(self, writer, tensor, base, moments):
        residual, base_flat = self._residual(tensor, base)
        support = weight_support(residual, moments["exp_avg_sq"].reshape(-1), self.shrink)
        values = torch.zeros_like(residual)
        indices, codebook16 = fp16_quantize(residual[support], self.shrink.clusters_w, self.quantizer)
        values[support] = codebook16[indices] if indices.numel() else values[support]
        rebuilt = (base_flat + values).to(tensor.dtype).reshape(tensor.shape)
        dense = torch.zeros(residual.numel(), dtype=torch.int64)
        dense[support] = indices + 1  # 0 is reserved for exact zero
        entry = {"coding": "excp-ref", "dtype": dtype_name(tensor.dtype), "shape": list(tensor.shape),
                 "residual": self.residual, "codebook_fp16": codebook16.tolist(), "bits": self.bits[0],
                 "indices": writer.add(pack_xz(dense, self.bits[0]), "w")}
        return entry, rebuilt, support

    # ---- optimizer -----------------------------------------------------------------------------------------
    def _moments(self, writer, entry, support, keyframe, name, reference) -> tuple[dict[str, Any], torch.Tensor | None]:
        """The moments' header record, and the decoded v when a following file may be coded against it."""
        m = entry["exp_avg"].detach().reshape(-1)
        v = entry["exp_avg_sq"].detach().reshape(-1)
        shapes = {"shape": list(entry["exp_avg"].shape)}
        if self.mode == "lossless" or (self.mode == "excp-ref" and keyframe):
            second = entry["exp_avg_sq"]
            record = {"coding": "lossless", **shapes, "tensor": name}
            # v changes slowly (beta2 ~ 0.95-0.999): the parent's exponent at the same position predicts this one
            lookup = getattr(reference, "second_moment", None)  # optional for user-written references
            parent = lookup(name) if lookup is not None and self.mode == "lossless" else None
            if parent is not None and (parent.shape != second.shape or parent.dtype not in float_fields.LAYOUT):
                parent = None
            record["exp_avg_sq"] = self._lossless(writer, second, None, "v",
                                                  None if parent is None else float_fields.exponent_field(parent))
            if parent is not None:
                record["exp_avg_sq"]["context"] = "parent_exp_avg_sq"
            # |m| <= ~sqrt(v): the exponent of v predicts the exponent of m, so m is coded given v
            context = float_fields.exponent_field(second) if second.dtype in float_fields.LAYOUT else None
            record["exp_avg"] = self._lossless(writer, entry["exp_avg"], None, "m", context)
            if context is not None:
                record["exp_avg"]["context"] = "exp_avg_sq"
            return record, (second.detach().clone() if self.mode == "lossless" else None)
        if self.mode == "excp-ref":
            magnitude = m.float().abs()  # official mask: |m| > beta * mean|m| on the kept residual; no v > 0 check
            keep = (magnitude > self.beta * float(magnitude.mean())) & support
            result = {"coding": "excp-ref", **shapes, "dtypes": [dtype_name(m.dtype), dtype_name(v.dtype)]}
            for key, values, bits, kind in (("m", m, self.bits[1], "m"), ("v", v, self.bits[2], "v")):
                indices, codebook16 = fp16_quantize(values.float()[keep], 2 ** bits - 1, self.quantizer)
                dense = torch.zeros(values.numel(), dtype=torch.int64)
                dense[keep] = indices + 1
                result[key] = {"codebook_fp16": codebook16.tolist(), "bits": bits,
                               "indices": writer.add(pack_xz(dense, bits), kind)}
            return result, None
        scope = "full" if support is None else "support"
        keep = momentum_mask(m.float(), v.float(), support, self.shrink)  # (N,) bool, inside support
        sub_mask = keep if support is None else select(keep, support)
        result = {"coding": "excp", **shapes, "scope": scope, "tensor": name, "v_domain": self.v_domain,
                  "kept": int(keep.sum()),
                  "dtypes": [dtype_name(m.dtype), dtype_name(v.dtype)],
                  "mask": writer.add(encode_mask(sub_mask.numpy()), "mask")}
        v_values = select(v.float(), keep)
        if self.v_domain == "log":
            v_values = torch.log(v_values)
        parent_log_v = None  # (kept,) log of the parent's decoded v, NaN where the parent kept none
        decoded: dict[str, torch.Tensor] = {}
        if self.delta_v and reference is not None:
            parent_log_v = parent_log_second_moment(getattr(reference, "second_moment", None), name, keep)
        if parent_log_v is not None:  # the record's "v_delta" tells the decoder to fetch the parent's v
            known = ~torch.isnan(parent_log_v)
            result["v_delta"], decoded["v_delta"] = self._code_values(writer, v_values[known] - parent_log_v[known],
                                                                      self.bits[2], "v")
            v_values = v_values[~known]
        fp16_v = self.v_domain == "linear-fp16"
        result["m"], decoded["m"] = self._code_values(writer, select(m.float(), keep), self.bits[1], "m")
        result["v"], decoded["v"] = self._code_values(writer, v_values, self.bits[2], "v", fp16_v)
        if not self.delta_v:
            return result, None
        second = torch.zeros(v.numel())
        scatter(second, keep, torch.exp(merge_log_second_moment(parent_log_v, decoded["v"], decoded.get("v_delta"))))
        return result, second.to(v.dtype).reshape(entry["exp_avg_sq"].shape)

    def _code_values(self, writer, values: torch.Tensor, bits: int, kind: str,
                     fp16_codebook: bool = False) -> tuple[dict[str, Any], torch.Tensor]:
        """k-means + rANS of one value stream: its header record and the values the decoder will see."""
        quantize = fp16_quantize if fp16_codebook else quantize_values
        indices, codebook = quantize(values, 2 ** bits - 1, self.quantizer)
        record = {"codebook": codebook.tolist() if fp16_codebook else float32_list(codebook),
                  "indices": writer.add(encode_symbols(indices.numpy(), max(1, codebook.numel())), kind)}
        return record, (codebook[indices] if indices.numel() else torch.zeros(0))

    def _optimizer_header(self, writer, optimizer, moments_header, where: str) -> dict[str, Any]:
        state_header = {}
        for index, entry in optimizer.state.items():
            record: dict[str, Any] = {"scalars": {}, "tensors": {}}
            if index in moments_header:
                record["moments"] = moments_header[index]
            for key, value in entry.items():
                if index in moments_header and key in MOMENT_KEYS:
                    continue
                if is_header_scalar(value):
                    record["scalars"][key] = to_json_value(value)
                elif isinstance(value, torch.Tensor):
                    record["tensors"][key] = self._lossless(writer, value, None, "optimizer")
                else:
                    raise SlimlabError(f"{where}: optimizer state '{key}' of parameter {index} has unsupported type "
                                       f"{type(value).__name__}")
            state_header[str(index)] = record
        try:
            groups = to_json_value(optimizer.param_groups)
        except SlimlabError as error:
            raise SlimlabError(f"{where}: optimizer param_groups: {error}") from error
        return {"param_groups": groups, "param_names": optimizer.param_names,
                "state": state_header}


def float32_list(values: torch.Tensor) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32 (about 10 characters in the JSON
    footer instead of 20 for the float64 repr); decoding through float64 to float32 is exact, since float64 has more
    than 2 * 24 + 2 bits and so cannot round twice wrongly."""
    return [float(str(value)) for value in values.detach().to(torch.float32).cpu().numpy()]


def bits_per_parameter(coded_bytes: int, parameter_count: int) -> float:
    return 8 * coded_bytes / max(1, parameter_count)


def ratio(raw_bytes: int, coded_bytes: int) -> float:
    return raw_bytes / coded_bytes if coded_bytes else math.inf


def support_stream(writer, support: torch.Tensor, shape) -> dict[str, Any]:
    """The header fields of M_w: order-0, or coded given row and column keep rates where that is smaller.

    The row/column model wins when the score has row and column structure (``score='adam'``: v is large along
    whole rows and columns); for the default score the mask is close to i.i.d. within a tensor and order-0 stays.
    The estimate decides whether to try it; the smaller of the two actual streams is kept.
    """
    flat = support.numpy()
    order0 = encode_mask(flat)
    matrix = matrix_shape(shape)
    if matrix is None:
        return {"support": writer.add(order0, "mask")}
    grid = flat.reshape(matrix)
    if row_column_cost_bits(grid) >= order0_cost_bits(grid):
        return {"support": writer.add(order0, "mask")}
    coded = encode_row_column_mask(grid)
    if len(coded) >= len(order0):
        return {"support": writer.add(order0, "mask")}
    return {"support": writer.add(coded, "mask"), "support_coding": "row_column"}
