"""Weight-momentum joint shrinking and moment quantization for one parameter (ExCP, section 3).

Shapes: every tensor here is flattened, length N. ``support`` (M_w) marks the residual entries kept;
``moment_mask`` (M_o) marks, among those, where the Adam moments are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slimlab.core.quant import assign_nearest, kmeans_codebook, uniform_codebook


@dataclass(frozen=True)
class ShrinkSettings:
    alpha: float = 5e-5          # weight shrinking strength; the threshold ratio is alpha / sqrt(mean(v))
    beta: float = 2.0            # momentum kept where |m| > beta * mean(|m|)
    ratio_clamp: float = 2.5     # caps the threshold at 2.5 x median(|dW|) so no tensor is wiped out
    clusters_w: int = 15         # 2**bits - 1: index 0 is reserved for exact zero
    clusters_m: int = 15
    clusters_v: int = 15
    quantizer: str = "kmeans"    # or "uniform" (ablation)
    momentum_shrinking: bool = True


def weight_threshold_ratio(second_moment: torch.Tensor | None, settings: ShrinkSettings) -> float:
    """r_w = min(clamp, alpha / sqrt(mean(v))): noisier tensors (large v) keep more residual entries."""
    if second_moment is None:
        return settings.ratio_clamp
    mean_v = float(second_moment.float().mean())
    if not mean_v > 0:
        return settings.ratio_clamp
    return min(settings.ratio_clamp, settings.alpha / math.sqrt(mean_v))


def weight_support(residual: torch.Tensor, second_moment: torch.Tensor | None, settings: ShrinkSettings) -> torch.Tensor:
    """M_w = |dW| > r_w * median(|dW|)  (bool, N)."""
    magnitude = residual.abs()
    threshold = weight_threshold_ratio(second_moment, settings) * float(magnitude.median())
    return magnitude > threshold


def momentum_mask(first_moment: torch.Tensor, second_moment: torch.Tensor, support: torch.Tensor | None,
                  settings: ShrinkSettings) -> torch.Tensor:
    """M_o = M_w & (|m| > beta * mean(|m|)), restricted to v > 0 so log(v) exists  (bool, N)."""
    keep = second_moment > 0
    if settings.momentum_shrinking:
        magnitude = first_moment.abs()
        keep &= magnitude > settings.beta * float(magnitude.float().mean())
    if support is not None:
        keep &= support
    return keep


def codebook_for(values: torch.Tensor, clusters: int, quantizer: str) -> torch.Tensor:
    if quantizer == "uniform":
        return uniform_codebook(values, clusters)
    return kmeans_codebook(values, clusters)


def quantize_values(values: torch.Tensor, clusters: int, quantizer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices int64, codebook float32) for 1-D values; an empty input gives empty outputs."""
    codebook = codebook_for(values, clusters, quantizer)
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.int64), codebook
    return assign_nearest(values, codebook), codebook
