"""Scalar quantizers: 1-D k-means (non-uniform) and uniform codebooks, with nearest-code assignment.

k-means is Lloyd's algorithm on a histogram of the values (4096 bins by default) with quantile
initialisation, so its cost does not grow with the tensor size beyond one histogram and one final pass;
a last exact step recomputes each centroid as the mean of the values assigned to it. Everything is
vectorised torch and deterministic, so it runs unchanged on GPU.
"""

from __future__ import annotations

import torch


def kmeans_codebook(values: torch.Tensor, clusters: int, bins: int = 4096, iterations: int = 50) -> torch.Tensor:
    """Sorted float32 codebook of at most ``clusters`` centroids for the 1-D ``values``."""
    values = values.reshape(-1).float()
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.float32, device=values.device)
    unique = torch.unique(values) if values.numel() <= 65536 else None
    if unique is not None and unique.numel() <= clusters:
        return unique.float()
    low, high = values.min(), values.max()
    if low == high:
        return low.reshape(1).float()
    counts = torch.histc(values, bins=bins, min=float(low), max=float(high))  # (bins,)
    width = (high - low) / bins
    centers = low + width * (torch.arange(bins, device=values.device, dtype=torch.float32) + 0.5)  # (bins,)
    cumulative = torch.cumsum(counts, 0) / counts.sum()
    targets = (torch.arange(clusters, device=values.device, dtype=torch.float32) + 0.5) / clusters
    codebook = centers[torch.searchsorted(cumulative, targets).clamp(max=bins - 1)]  # quantile init
    codebook = torch.unique(codebook)  # duplicate quantiles (heavy point masses) collapse
    for _ in range(iterations):
        assignment = assign_nearest(centers, codebook)
        mass = torch.zeros_like(codebook).scatter_add_(0, assignment, counts)
        total = torch.zeros_like(codebook).scatter_add_(0, assignment, counts * centers)
        updated = torch.where(mass > 0, total / mass.clamp(min=1e-12), codebook)
        updated, _ = torch.sort(updated)
        if torch.equal(updated, codebook):
            break
        codebook = updated
    # One exact Lloyd step on the raw values removes the histogram's binning error.
    assignment = assign_nearest(values, codebook)
    mass = torch.zeros_like(codebook).scatter_add_(0, assignment, torch.ones_like(values))
    total = torch.zeros_like(codebook).scatter_add_(0, assignment, values)
    codebook = torch.where(mass > 0, total / mass.clamp(min=1), codebook)
    codebook = torch.unique(codebook[mass > 0])
    return codebook.float()


def uniform_codebook(values: torch.Tensor, clusters: int) -> torch.Tensor:
    """Evenly spaced levels from min to max (the ablation baseline for k-means)."""
    values = values.reshape(-1).float()
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.float32, device=values.device)
    low, high = values.min(), values.max()
    if low == high:
        return low.reshape(1).float()
    return torch.linspace(float(low), float(high), clusters, device=values.device)


def assign_nearest(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of a sorted codebook for each value (ties go to the lower index)."""
    if codebook.numel() == 1:
        return torch.zeros(values.shape, dtype=torch.int64, device=values.device)
    midpoints = (codebook[1:] + codebook[:-1]) / 2  # (K-1,)
    return torch.bucketize(values.float(), midpoints, right=False)


def quantize(values: torch.Tensor, clusters: int, method: str = "kmeans") -> tuple[torch.Tensor, torch.Tensor]:
    """Return (indices, codebook) so that ``codebook[indices]`` approximates ``values``."""
    if method == "kmeans":
        codebook = kmeans_codebook(values, clusters)
    elif method == "uniform":
        codebook = uniform_codebook(values, clusters)
    else:
        raise ValueError(f"unknown quantization method '{method}' (kmeans or uniform)")
    return assign_nearest(values.reshape(-1), codebook), codebook
