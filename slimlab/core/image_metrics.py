"""Image quality metrics: PSNR and SSIM against ground truth, KID and FID between image sets.

Images are float tensors (B, 3, H, W) in [-1, 1] unless a function says otherwise. KID/FID compare feature
distributions; InceptionV3 weights are not available offline, so the default feature network is
``RandomConvFeatures``: a fixed random conv net built from its own seed (identical on every machine and run).
Numbers are therefore comparable with each other, not with published Inception-based FID/KID.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

from slimlab.core.errors import SlimlabError


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().clamp(-1, 1).add(1).div(2)  # [-1, 1] -> [0, 1]


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB on the [0, 1] scale, shape (B,); identical images give +inf."""
    _same_shape(prediction, target, "psnr")
    mse = (_to_unit(prediction) - _to_unit(target)).pow(2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).float()  # (size, size), sums to 1


def ssim(prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) on the [0, 1] scale, shape (B,).

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, statistics per channel over valid windows,
    averaged over channels and positions: the same definition as skimage's ``gaussian_weights=True``.
    """
    _same_shape(prediction, target, "ssim")
    x, y = _to_unit(prediction).double(), _to_unit(target).double()  # (B, C, H, W); float64: var = E x^2 - mu^2 cancels
    if min(x.shape[-2:]) < window:
        raise SlimlabError(f"ssim: images of {tuple(x.shape[-2:])} are smaller than the {window}x{window} window")
    channels = x.shape[1]
    kernel = _gaussian_window(window, sigma).double().to(x.device).expand(channels, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)  # (B, C, H-w+1, W-w+1)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1).float()


class RandomConvFeatures(nn.Module):
    """Frozen random conv net (seeded), features = mean and std of each stage's activations, concatenated.

    Four stride-2 conv + ReLU stages (3 -> 16 -> 32 -> 64 -> 128), He-initialised from ``seed`` with a private
    generator so global seeding never changes it; inputs are resized to ``input_size``. Output (B, 480).
    """

    def __init__(self, seed: int = 1234, input_size: int = 64):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        widths = (3, 16, 32, 64, 128)
        self.input_size = input_size
        self.convs = nn.ModuleList()
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / (c_in * 9)))
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False, antialias=True)
        features = []
        for conv in self.convs:
            x = F.relu(conv(x))  # (B, C, h, w)
            features += [x.mean((2, 3)), x.flatten(2).std(2)]
        return torch.cat(features, 1)  # (B, sum 2C)


@torch.no_grad()
def extract_features(network: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    parameter = next(network.parameters())
    chunks = [network(images[i:i + batch_size].to(parameter.device)).double().cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)  # (N, D)


def kid_from_features(real: torch.Tensor, fake: torch.Tensor, subsets: int = 10, subset_size: int | None = None,
                      seed: int = 0, paired: bool = False) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, mean and std over subsets.

    Each subset draws ``subset_size`` rows (without replacement) from each set; with one subset covering
    both sets whole, the value is the plain unbiased estimate.

    ``paired``: row i of both sets shows the same content (a translated test input and its ground truth). The
    estimator assumes independent draws, so a real row must never meet its own generated counterpart: k(x_i, y_i)
    is large for a faithful output and would pull the score below zero in proportion to per-image fidelity, not
    distribution distance (on 64 test images, the ground truth scored against itself gave -9e-3). Each subset
    then takes its real rows and its generated rows from disjoint halves of one permutation (at most n // 2 each).
    """
    n = min(len(real), len(fake))
    if n < 2 or (paired and n < 4):
        raise SlimlabError(f"kid: needs at least {4 if paired else 2} images per set"
                           f"{' (paired: two disjoint halves)' if paired else ''}, got {len(real)} real and "
                           f"{len(fake)} generated")
    if paired and len(real) != len(fake):
        raise SlimlabError(f"kid: paired sets must have one generated image per real one, got {len(real)} real and "
                           f"{len(fake)} generated")
    m = min(subset_size or n, n // 2 if paired else n)
    dimension = real.shape[1]
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        if paired:
            order = generator.permutation(n)
            x, y = real[order[:m]].double(), fake[order[m:2 * m]].double()
        else:
            x = real[generator.choice(len(real), m, replace=False)].double()
            y = fake[generator.choice(len(fake), m, replace=False)].double()
        k_xx = (x @ x.T / dimension + 1) ** 3
        k_yy = (y @ y.T / dimension + 1) ** 3
        k_xy = (x @ y.T / dimension + 1) ** 3
        off = m * (m - 1)
        value = (k_xx.sum() - k_xx.diagonal().sum()) / off + (k_yy.sum() - k_yy.diagonal().sum()) / off \
            - 2 * k_xy.mean()
        values.append(float(value))
    return float(np.mean(values)), float(np.std(values))


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets: |mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2)."""
    if min(len(real), len(fake)) < 2:
        raise SlimlabError("fid: needs at least 2 images per set")
    a, b = real.double().numpy(), fake.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (S1 S2)^1/2 = sum of sqrt eigenvalues of S1^1/2 S2 S1^1/2 (similar matrices, and this one is symmetric
    # PSD): two symmetric eigendecompositions, stable and fast even when N < d makes S1, S2 singular
    w, v = linalg.eigh(s1)
    root_s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eigenvalues = linalg.eigvalsh(root_s1 @ s2 @ root_s1)
    trace_root = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_root)


def kid_and_fid(network: nn.Module, real_images: torch.Tensor, generated_images: torch.Tensor,
                subsets: int = 10, subset_size: int | None = None, paired: bool = False) -> dict[str, float]:
    """KID (mean, std over subsets) and FID between two image sets on ``network`` features; ``paired`` when image
    i of both sets shows the same content (see ``kid_from_features``; FID, built from means and covariances,
    does not pair rows)."""
    real = extract_features(network, real_images)
    fake = extract_features(network, generated_images)
    size = subset_size or max(2, min(len(real), len(fake)) // 2)
    kid_mean, kid_std = kid_from_features(real, fake, subsets=subsets, subset_size=size, paired=paired)
    return {"kid": kid_mean, "kid_std": kid_std, "fid": fid_from_features(real, fake)}


def _same_shape(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise SlimlabError(f"{name}: expected two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} "
                           f"and {tuple(b.shape)}")
