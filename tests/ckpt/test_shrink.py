import math

import torch

from slimlab.ckpt.shrink import (ScoreHistogram, ShrinkSettings, adam_scores, adam_support, momentum_mask,
                                 weight_support, weight_threshold_ratio)


def test_threshold_ratio_by_hand():
    settings = ShrinkSettings(alpha=5e-5)
    # mean(v) = 1e-4 -> sqrt = 1e-2 -> r = 5e-5 / 1e-2 = 5e-3
    assert math.isclose(weight_threshold_ratio(torch.full((4,), 1e-4), settings), 5e-3, rel_tol=1e-6)
    # mean(v) = 1e-12 -> r = 5e-5 / 1e-6 = 50, clamped to 2.5
    assert weight_threshold_ratio(torch.full((4,), 1e-12), settings) == 2.5
    assert weight_threshold_ratio(torch.zeros(4), settings) == 2.5


def test_joint_masks_by_hand():
    residual = torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5])
    v = torch.full((5,), 1e-6)  # sqrt(mean v) = 1e-3, so alpha = 1e-3 gives r = 1
    settings = ShrinkSettings(alpha=1e-3, beta=2.0)
    # median |dW| = 0.3 -> tau = 0.3 -> keep |dW| > 0.3
    support = weight_support(residual, v, settings)
    assert support.tolist() == [False, False, False, True, True]
    m = torch.tensor([1.0, 0.0, 0.0, -5.0, 1.0])  # mean|m| = 1.4 -> keep |m| > 2.8
    assert momentum_mask(m, v, support, settings).tolist() == [False, False, False, True, False]
    # without momentum shrinking the moments follow the residual support
    loose = ShrinkSettings(alpha=1e-3, momentum_shrinking=False)
    assert momentum_mask(m, v, support, loose).tolist() == [False, False, False, True, True]


def test_moment_mask_excludes_zero_second_moment():
    m = torch.tensor([4.0, 4.0, 0.0, 0.0])
    v = torch.tensor([1e-8, 0.0, 1e-8, 1e-8])
    assert momentum_mask(m, v, None, ShrinkSettings(beta=1.0)).tolist() == [True, False, False, False]


def test_adam_score_threshold_by_hand():
    # scores |dW| * sqrt(v): 1*2, 2*1, 0.5*8, 3*0, 1*0.5 = [2, 2, 4, 0, 0.5]
    residual = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0])
    v = torch.tensor([4.0, 1.0, 64.0, 0.0, 0.25])
    scores = adam_scores(residual, v)
    assert scores.tolist() == [2.0, 2.0, 4.0, 0.0, 0.5]
    histogram = ScoreHistogram()
    histogram.add(scores)
    # budget 0.2 * 5 = 1 entry: the top score 4 alone
    assert histogram.threshold(0.2) == 4.0
    # budget 2: 4 and then the bin of 2, which holds two entries (ties are kept together)
    assert histogram.threshold(0.4) == 2.0
    assert adam_support(residual, v, 2.0).tolist() == [True, True, True, False, False]
    # budget 4 of 5, but only 4 entries score above zero: keep all of them, never the zero score
    assert histogram.threshold(0.8) == 0.5
    everything = histogram.threshold(1.0)
    assert everything <= 0.5
    assert adam_support(residual, v, everything).tolist() == [True, True, True, False, True]


def test_curvature_score_by_hand():
    # |dW| * v^(1/4): 1 * 16^(1/4) = 2, 2 * 1 = 2, 0.5 * 4096^(1/4) = 4, 3 * 0 = 0, 1 * (1/16)^(1/4) = 0.5
    residual = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0])
    v = torch.tensor([16.0, 1.0, 4096.0, 0.0, 1 / 16])
    assert adam_scores(residual, v, 0.25).tolist() == [2.0, 2.0, 4.0, 0.0, 0.5]
    # the adam score of the same entries: |dW| * sqrt(v) = [4, 2, 32, 0, 0.25]: a different order
    assert adam_scores(residual, v).tolist() == [4.0, 2.0, 32.0, 0.0, 0.25]
    assert adam_support(residual, v, 2.0, 0.25).tolist() == [True, True, True, False, False]


def test_adam_score_histogram_spans_tensors():
    # Two tensors share one budget: the one whose entries score higher keeps more.
    histogram = ScoreHistogram()
    loud, quiet = torch.full((30,), 8.0), torch.full((10,), 1.0)
    histogram.add(loud)
    histogram.add(quiet)
    assert histogram.entries == 40
    assert histogram.threshold(0.5) == 8.0           # 20 of 40: all taken from the loud tensor
    assert histogram.threshold(0.9) == 1.0           # 36 > 30: reaches into the quiet one
    assert ScoreHistogram().threshold(0.5) == math.inf
