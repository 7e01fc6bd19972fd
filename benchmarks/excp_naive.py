"""Arm 8 of the ExCP benchmark: the naive baseline a user would write without ExCP.

Each delta checkpoint keeps, in every tensor, the same fraction of its residual entries (the largest |W_t - W^_{t-1}|
against the previous *decoded* weights, so errors do not pile up), with positions as zstd-coded gaps and values as
fp16. Adam's m and v are stored as int8 / uint8 with one absmax scale per tensor. The kept fraction is searched per
checkpoint so that the weight streams (positions + values) cost what ExCP's weight streams cost (mask + indices),
i.e. the same bits/param as arm 6 for the weights. The first checkpoint is a zstd-3 keyframe of the raw bytes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import zstandard

from excp_arms import ArmResult, PeakRss, Timer, raw_blob

from slimlab.ckpt.state import CheckpointState

_ZSTD = zstandard.ZstdCompressor(level=3)


def _topk_streams(residual: np.ndarray, fraction: float) -> tuple[bytes, bytes, np.ndarray]:
    """(gaps, values) of the top ``fraction`` of |residual| and the decoded residual. residual: (N,) float32."""
    count = max(1, int(round(fraction * residual.size)))
    positions = np.sort(np.argpartition(np.abs(residual), residual.size - count)[residual.size - count:])  # (k,)
    gaps = np.diff(positions, prepend=0).astype(np.uint32)
    values = residual[positions].astype(np.float16)
    decoded = np.zeros_like(residual)
    decoded[positions] = values.astype(np.float32)
    return gaps.tobytes(), values.tobytes(), decoded


def _weight_streams(residuals: list[np.ndarray], fraction: float) -> tuple[int, list[np.ndarray]]:
    size, decoded = 0, []
    for residual in residuals:
        gaps, values, restored = _topk_streams(residual, fraction)
        size += len(_ZSTD.compress(gaps)) + len(_ZSTD.compress(values))
        decoded.append(restored)
    return size, decoded


def _int8_moment(tensor: torch.Tensor, signed: bool) -> bytes:
    """One absmax scale per tensor; m to int8, v (>= 0) to uint8, then zstd-3 (the scale appended as fp32)."""
    values = tensor.detach().reshape(-1).float().numpy()
    scale = float(np.abs(values).max()) or 1.0
    levels = 127 if signed else 255
    codes = np.clip(np.round(values / scale * levels), -levels if signed else 0, levels)
    codes = codes.astype(np.int8 if signed else np.uint8)
    return _ZSTD.compress(codes.tobytes()) + np.float32(scale).tobytes()


def naive_topk_arm(name: str, states: list[CheckpointState], steps: list[int], weight_bits_per_param: float,
                   evaluate) -> ArmResult:
    """Code every checkpoint; the weights' budget is ``weight_bits_per_param`` (arm 6's mask + weight streams)."""
    arm = ArmResult(name, "lossy", note=f"weights at {weight_bits_per_param:.2f} bits/param (arm 6's weight "
                                        "streams), per-tensor top-k, fp16 values; m, v int8 absmax")
    previous: dict[str, torch.Tensor] | None = None
    with PeakRss() as rss:
        for state, step in zip(states, steps):
            blob = raw_blob(state)
            optimizer = state.optimizer
            index_of = {n: i for i, n in enumerate(optimizer.param_names) if n}
            if previous is None:  # keyframe: the raw bytes through zstd-3
                with Timer() as encode:
                    coded, by_kind, fraction = len(_ZSTD.compress(blob)), {}, 1.0
                reconstructed = {n: t.detach().clone() for n, t in state.model.items()}
            else:
                trained = [n for n in state.model if n in index_of]
                residuals = [(state.model[n].detach().float() - previous[n].float()).reshape(-1).numpy()
                             for n in trained]
                budget = weight_bits_per_param * sum(r.size for r in residuals) / 8
                low, high = 1e-5, 1.0  # bisect the kept fraction onto the weight budget (bytes rise with it)
                for _ in range(12):
                    middle = (low * high) ** 0.5
                    low, high = (middle, high) if _weight_streams(residuals, middle)[0] <= budget else (low, middle)
                fraction = low
                with Timer() as encode:  # the coding at the chosen fraction, not the search
                    weight_bytes, decoded = _weight_streams(residuals, fraction)
                    moment_bytes = {"m": 0, "v": 0}
                    for n in trained:
                        entry = optimizer.state[index_of[n]]
                        moment_bytes["m"] += len(_int8_moment(entry["exp_avg"], True))
                        moment_bytes["v"] += len(_int8_moment(entry["exp_avg_sq"], False))
                    others = [t for n, t in state.model.items() if n not in index_of]  # untrained tensors: lossless
                    other_bytes = sum(len(_ZSTD.compress(t.detach().contiguous().numpy().tobytes())) for t in others)
                by_kind = {"w": weight_bytes + other_bytes, **moment_bytes}
                coded = sum(by_kind.values())
                reconstructed = {n: t.detach().clone() for n, t in state.model.items()}
                for n, restored in zip(trained, decoded):
                    base = previous[n].float().reshape(-1) + torch.from_numpy(restored)
                    reconstructed[n] = base.reshape(state.model[n].shape).to(state.model[n].dtype)
            arm.records.append({"step": step, "keyframe": previous is None, "raw": len(blob), "coded": coded,
                                "enc_wall": encode.wall, "enc_cpu": encode.cpu, "dec_wall": 0.0, "dec_cpu": 0.0,
                                "bytes_by_kind": by_kind, "kept_fraction": fraction})
            previous = reconstructed
            decoded_state = dataclasses.replace(state, model=reconstructed)
    arm.peak_rss_mb, arm.rss_increase_mb = rss.peak_mb, rss.peak_mb - rss.start_mb
    arm.decoded_last_eval_loss = evaluate(decoded_state)
    return arm
