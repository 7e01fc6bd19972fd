"""Compression arms of the ExCP benchmark, all run on the same in-memory checkpoints.

Raw bytes are the weights plus every optimizer tensor (Adam m, v and the per-parameter `step`), the same
quantity as `EncodeResult.raw_bytes`. Throughput is raw bytes over seconds, given both as wall time and as
process CPU time: the benchmark machine may be shared, and with one compute thread CPU time is what an idle
machine's wall clock would show.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import zstandard

from slimlab.ckpt.chain import CheckpointChain
from slimlab.ckpt.codec import ExcpCodec
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.decode import decode_checkpoint
from slimlab.ckpt.lossless import tensor_bytes
from slimlab.ckpt.state import CheckpointState

MB = 1e6
_PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak resident set size while the block runs, sampled from /proc/self/statm every 5 ms."""

    def __init__(self):
        self.start_mb = self.peak_mb = _rss_mb()
        self._stop = threading.Event()

    def __enter__(self):
        self.start_mb = self.peak_mb = _rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE / MB


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def state_tensors(state: CheckpointState) -> list[torch.Tensor]:
    """Weights, then each parameter's optimizer tensors, in a fixed order."""
    tensors = list(state.model.values())
    for index in sorted(state.optimizer.state):
        tensors += [value for value in state.optimizer.state[index].values() if isinstance(value, torch.Tensor)]
    return tensors


def raw_blob(state: CheckpointState) -> bytes:
    return b"".join(tensor_bytes(tensor).tobytes() for tensor in state_tensors(state))


def state_digest(state: CheckpointState) -> str:
    digest = hashlib.sha256()
    for tensor in state_tensors(state):
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


@dataclass
class ArmResult:
    name: str
    family: str                                   # "baseline", "lossless" or "lossy"
    records: list[dict] = field(default_factory=list)   # one per coded checkpoint
    exact: bool | None = None                     # SHA-256 of every decoded checkpoint equals the original
    decode_matches_encoder: bool | None = None    # decoded weights == the encoder's reconstruction, bit for bit
    orphaned_counted_by_decoder: int = 0          # m != 0 where v <= 0 before the decoder's repair
    orphaned_in_decoded_state: int = 0            # m != 0 where v == 0 in what the optimizer receives
    peak_rss_mb: float = 0.0
    rss_increase_mb: float = 0.0
    last_from_keyframe_s: float | None = None     # decode the last checkpoint through its whole lineage
    note: str = ""
    decoded_last_eval_loss: float | None = None   # held-out loss of the decoded last checkpoint, no training

    def totals(self, deltas_only: bool) -> tuple[int, int]:
        chosen = [r for r in self.records if not (deltas_only and r["keyframe"])]
        return sum(r["raw"] for r in chosen), sum(r["coded"] for r in chosen)

    def summary(self, parameter_count: int) -> dict:
        delta_raw, delta_coded = self.totals(True)
        chain_raw, chain_coded = self.totals(False)
        deltas = [r for r in self.records if not r["keyframe"]] or self.records
        raw_all = sum(r["raw"] for r in self.records)

        def speed(key):
            seconds = sum(r[key] for r in self.records)
            return raw_all / seconds / MB if seconds else None

        by_kind: dict[str, float] = {}
        for record in deltas:
            for kind, size in record.get("bytes_by_kind", {}).items():
                by_kind[kind] = by_kind.get(kind, 0.0) + 8 * size / parameter_count / len(deltas)
        return {
            "ratio": delta_raw / delta_coded if delta_coded else None,
            "chain_ratio": chain_raw / chain_coded if chain_coded and len(self.records) > 1 else None,
            "bits_per_param": 8 * delta_coded / len(deltas) / parameter_count if delta_coded else None,
            "bits_per_param_by_stream": by_kind,
            "compress_mb_s": speed("enc_cpu"), "compress_wall_mb_s": speed("enc_wall"),
            "decompress_mb_s": speed("dec_cpu"), "decompress_wall_mb_s": speed("dec_wall"),
            "checkpoints_coded": len(self.records), "delta_checkpoints": sum(not r["keyframe"] for r in self.records),
            "exact": self.exact, "decode_matches_encoder": self.decode_matches_encoder,
            "orphaned_counted_by_decoder": self.orphaned_counted_by_decoder,
            "orphaned_in_decoded_state": self.orphaned_in_decoded_state,
            "peak_rss_mb": round(self.peak_rss_mb, 1), "rss_increase_mb": round(self.rss_increase_mb, 1),
            "last_from_keyframe_s": self.last_from_keyframe_s, "note": self.note,
            "decoded_last_eval_loss": self.decoded_last_eval_loss,
            "per_checkpoint": [{key: value for key, value in r.items()} for r in self.records],
        }


def run_bytes_arm(name: str, blobs: list[bytes], steps: list[int], indices: list[int],
                  compress: Callable[[bytes, bytes | None], bytes],
                  decompress: Callable[[bytes, bytes | None], bytes], residual: bool, note: str = "") -> ArmResult:
    """A general-purpose codec on raw bytes; `residual` codes checkpoint i against raw checkpoint i - 1."""
    arm = ArmResult(name, "baseline", note=note)
    exact = True
    with PeakRss() as rss:
        for i in indices:
            previous = blobs[i - 1] if residual and i > 0 else None
            with Timer() as encode:
                coded = compress(blobs[i], previous)
            with Timer() as decode:
                restored = decompress(coded, previous)
            exact &= hashlib.sha256(restored).digest() == hashlib.sha256(blobs[i]).digest()
            arm.records.append({"step": steps[i], "keyframe": previous is None and residual, "raw": len(blobs[i]),
                                "coded": len(coded), "enc_wall": encode.wall, "enc_cpu": encode.cpu,
                                "dec_wall": decode.wall, "dec_cpu": decode.cpu})
    arm.exact = exact
    arm.peak_rss_mb, arm.rss_increase_mb = rss.peak_mb, rss.peak_mb - rss.start_mb
    return arm


def zstd_codec(level: int):
    compressor, decompressor = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
    return (lambda data, _: compressor.compress(data)), (lambda data, _: decompressor.decompress(data))


def xz_codec():
    return (lambda data, _: lzma.compress(data, preset=6)), (lambda data, _: lzma.decompress(data))


def residual_xz_codec(preset: int = 6):
    """XOR against the previous raw checkpoint (lossless; unchanged bits become zeros), then xz at `preset`."""

    def xor(data: bytes, previous: bytes | None) -> bytes:
        if previous is None:
            return data
        return np.bitwise_xor(np.frombuffer(data, np.uint8), np.frombuffer(previous, np.uint8)).tobytes()

    return (lambda data, previous: lzma.compress(xor(data, previous), preset=preset)), \
           (lambda data, previous: xor(lzma.decompress(data), previous))


def run_codec_arm(name: str, family: str, codec: ExcpCodec, states: list[CheckpointState], steps: list[int],
                  folder: Path, digests: list[str], evaluate: Callable[[CheckpointState], float]) -> ArmResult:
    """Append every checkpoint to a fresh chain, decode each file against the previous reconstruction."""
    arm = ArmResult(name, family)
    chain = CheckpointChain(folder, codec)
    previous: dict[str, torch.Tensor] | None = None
    previous_second_moments: dict[str, torch.Tensor] = {}
    exact, matches, stats = True, True, {}
    with PeakRss() as rss:
        for state, step in zip(states, steps):
            with Timer() as encode:
                result = chain.append(state, step)
            reader = ContainerReader(chain.path_for(step))
            base = previous or {}
            with Timer() as decode:
                decoded = decode_checkpoint(reader, base.get, stats, previous_second_moments.get)
            reader.close()
            exact &= state_digest(decoded) == digests[len(arm.records)]
            matches &= all(torch.equal(decoded.model[n], result.reconstructed[n]) for n in result.reconstructed)
            arm.orphaned_in_decoded_state += _orphaned(decoded)
            arm.records.append({"step": step, "keyframe": reader.header["is_keyframe"], "raw": result.raw_bytes,
                                "coded": result.coded_bytes, "enc_wall": encode.wall, "enc_cpu": encode.cpu,
                                "dec_wall": decode.wall, "dec_cpu": decode.cpu,
                                "bytes_by_kind": dict(result.bytes_by_kind)})
            previous, previous_second_moments = result.reconstructed, result.second_moments
    arm.exact, arm.decode_matches_encoder = exact, matches
    arm.decoded_last_eval_loss = evaluate(decoded)
    arm.orphaned_counted_by_decoder = stats.get("orphaned_first_moments", 0)
    arm.peak_rss_mb, arm.rss_increase_mb = rss.peak_mb, rss.peak_mb - rss.start_mb
    started = time.perf_counter()
    chain.load(steps[-1])
    arm.last_from_keyframe_s = time.perf_counter() - started
    return arm


def _orphaned(state: CheckpointState) -> int:
    count = 0
    for entry in state.optimizer.state.values():
        if "exp_avg" in entry:
            count += int(((entry["exp_avg"] != 0) & (entry["exp_avg_sq"] == 0)).sum())
    return count
