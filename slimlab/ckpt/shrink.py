"""Weight-momentum joint shrinking and moment quantization for one parameter (ExCP, section 3).

Shapes: every tensor here is flattened, length N. ``support`` (M_w) marks the residual entries kept;
``moment_mask`` (M_o) marks, among those, where the Adam moments are kept.

Three ways to choose M_w:
* ``excp`` (the paper's, default): per tensor, |dW| > r_w * median(|dW|) with r_w = min(2.5, alpha / sqrt(mean v)).
* ``adam`` (option): one budget for the whole checkpoint, keep the ``keep_fraction`` of all residual entries with
  the largest |dW| * sqrt(v). Under a quadratic model with v as diagonal Fisher, dropping entry i costs about
  v_i * dW_i^2 in loss, so this ranks entries by what dropping them costs; a single threshold over all tensors
  lets tensors that matter keep more than those that do not (a per-tensor or per-block quota cannot).
* ``curvature`` (option): the same global budget, ranked by |dW| * v^(1/4). Adam's step -lr * m / sqrt(v) is a
  Newton step for the diagonal curvature sqrt(v) / lr, so under the optimizer's own curvature model dropping
  entry i costs about sqrt(v_i) * dW_i^2. The Fisher reading (v_i * dW_i^2) over-weights v: it drops the
  small-v attention weights' residuals, whose loss it underestimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from slimlab.core.masked import lower_median
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
    threshold = weight_threshold_ratio(second_moment, settings) * lower_median(magnitude)
    return magnitude > threshold


# Histogram of log2(score) used to find the global threshold without holding every score: 64 bins per octave
# (scores resolved to 1.1%) over the whole float32 range.
LOG2_LOW, LOG2_HIGH, BINS_PER_OCTAVE = -160, 130, 64


# score name -> power of v in |dW| * v^power
SCORE_POWERS = {"adam": 0.5, "curvature": 0.25}


def adam_scores(residual: torch.Tensor, second_moment: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """|dW| * v^power  (float32, N; power 1/2: ``adam``, 1/4: ``curvature``); zero where either is zero, so such
    entries are never kept."""
    root = second_moment.reshape(-1).float().clamp_min(0).sqrt()
    return residual.abs().float() * (root if power == 0.5 else root.pow(2 * power))


class ScoreHistogram:
    """Counts of log2(score) over all tensors of a checkpoint; ``threshold`` meets a keep budget."""

    def __init__(self):
        self.bins = (LOG2_HIGH - LOG2_LOW) * BINS_PER_OCTAVE
        self.counts = torch.zeros(self.bins, dtype=torch.float64)
        self.entries = 0   # every entry scored, zeros included: the budget is a fraction of all of them

    def add(self, scores: torch.Tensor) -> None:
        self.entries += scores.numel()
        positive = scores[scores > 0]
        if positive.numel():
            self.counts += torch.histc(positive.double().log2(), self.bins, LOG2_LOW, LOG2_HIGH)

    def threshold(self, keep_fraction: float) -> float:
        """The largest bin edge t with count(score >= t) >= keep_fraction * entries.

        Keeps the budget or slightly more (at most the entries of one bin, whose scores differ by < 1.1%). When
        fewer entries than the budget score above zero, the lowest edge (every positive score is kept); inf when
        none does or the budget is zero.
        """
        budget = keep_fraction * self.entries
        from_top = self.counts.flip(0).cumsum(0)                      # count at or above each bin, top first
        if budget <= 0 or float(from_top[-1]) == 0:
            return math.inf
        reached = torch.nonzero(from_top >= budget)
        bin_index = self.bins - 1 - (int(reached[0]) if reached.numel() else self.bins - 1)
        return 2.0 ** (LOG2_LOW + bin_index / BINS_PER_OCTAVE)


def adam_support(residual: torch.Tensor, second_moment: torch.Tensor, threshold: float,
                 power: float = 0.5) -> torch.Tensor:
    """M_w = |dW| * v^power >= threshold, never where the score is zero  (bool, N)."""
    scores = adam_scores(residual, second_moment, power)
    return (scores >= threshold) & (scores > 0)


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
