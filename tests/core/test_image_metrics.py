import math

import pytest
import torch
from skimage.metrics import structural_similarity

from slimlab.core.errors import SlimlabError
from slimlab.core.image_metrics import (RandomConvFeatures, fid_from_features, kid_and_fid, kid_from_features, psnr,
                                        ssim)


def test_psnr_by_hand():
    prediction = torch.zeros(1, 3, 8, 8)      # 0.5 on the [0, 1] scale
    target = torch.full((1, 3, 8, 8), 0.2)    # 0.6: error 0.1 everywhere, mse 0.01
    assert psnr(prediction, target).item() == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(psnr(target, target).item())


def test_ssim_of_flat_images_by_hand_and_against_skimage():
    grey, white = torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)  # 0.5 and 1.0 on [0, 1]
    # no variance: SSIM = (2 * 0.5 * 1 + C1) / (0.25 + 1 + C1)
    assert ssim(grey, white).item() == pytest.approx((1 + 1e-4) / (1.25 + 1e-4), rel=1e-5)
    assert ssim(white, white).item() == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    y = (x + 0.3 * torch.randn(1, 3, 32, 32, generator=generator)).clamp(-1, 1)
    reference = structural_similarity(((x[0] + 1) / 2).double().numpy(), ((y[0] + 1) / 2).double().numpy(),
                                      channel_axis=0, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ssim(x, y).item() == pytest.approx(reference, abs=1e-4)


def test_kid_by_hand():
    # d = 1, k(a, b) = (a b + 1)^3. real {1, -1}: off-diagonal k = 0; fake {0, 0}: k = 1; cross k = 1
    real, fake = torch.tensor([[1.0], [-1.0]]), torch.tensor([[0.0], [0.0]])
    mean, std = kid_from_features(real, fake, subsets=1)
    assert mean == pytest.approx(0 + 1 - 2) and std == 0


def test_paired_kid_never_scores_an_output_against_its_own_target():
    # d = 1: real rows 1, fake rows 0 -> k_xx off-diagonal (1 + 1)^3 = 8, k_yy = 1, k_xy = 1: 8 + 1 - 2 = 7, any split
    mean, std = kid_from_features(torch.ones(4, 1), torch.zeros(4, 1), subsets=3, paired=True)
    assert mean == pytest.approx(7) and std == pytest.approx(0)
    # A perfect output set (fake = real, row by row): an unbiased score sits at 0 up to noise. Drawing the two
    # subsets independently meets ~1/n matched pairs, whose large self-kernel drags the estimate far below zero.
    features = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)) + 1.0
    paired, paired_std = kid_from_features(features, features, subsets=50, subset_size=32, paired=True)
    unpaired, _ = kid_from_features(features, features, subsets=50, subset_size=32)
    assert abs(paired) < 3 * paired_std / 50 ** 0.5 + 1e-3 and unpaired < -5 * paired_std / 50 ** 0.5
    with pytest.raises(SlimlabError, match="paired sets must have one generated image per real one"):
        kid_from_features(torch.zeros(6, 2), torch.zeros(5, 2), paired=True)
    with pytest.raises(SlimlabError, match="at least 4 images per set \\(paired"):
        kid_from_features(torch.zeros(3, 2), torch.zeros(3, 2), paired=True)


def test_fid_by_hand():
    real = torch.tensor([[-1.0, 0], [1, 0], [0, -1], [0, 1]])  # mean 0, covariance 2/3 I
    fake = real * 2 + torch.tensor([3.0, 0])                     # mean (3, 0), covariance 8/3 I
    # 9 + tr(2/3 I + 8/3 I - 2 (16/9 I)^1/2) = 9 + 2 (10/3 - 8/3)
    assert fid_from_features(real, fake) == pytest.approx(9 + 4 / 3, rel=1e-6)
    assert fid_from_features(real, real) == pytest.approx(0, abs=1e-6)


def test_random_features_are_fixed_and_kid_separates_distributions():
    torch.manual_seed(1)
    first = RandomConvFeatures()
    torch.manual_seed(2)
    second = RandomConvFeatures()
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    assert torch.equal(first(images), second(images))  # global seeding never changes the feature net
    generator = torch.Generator().manual_seed(0)
    noise = lambda: torch.rand(24, 3, 32, 32, generator=generator) * 2 - 1  # noqa: E731
    same = kid_and_fid(first, noise(), noise(), subsets=5)
    flat = kid_and_fid(first, noise(), torch.zeros(24, 3, 32, 32) + 0.3 * noise(), subsets=5)
    assert abs(same["kid"]) < flat["kid"] and same["fid"] < flat["fid"]
    with pytest.raises(SlimlabError, match="at least 2"):
        kid_from_features(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(SlimlabError, match="psnr"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 4))
