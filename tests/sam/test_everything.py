import numpy as np
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.everything import MaskGenerator, build_point_grid, dense_points, erode_covered


def test_point_grid_centres():
    grid = build_point_grid(2, 10, 20)
    assert grid.tolist() == [[5, 2.5], [15, 2.5], [5, 7.5], [15, 7.5]]


def test_dense_points_around_a_sparse_point():
    # 8 per side on an 8 x 8 image: stride 1; the sparse (2 per side) point (2, 2) gets x, y in {1, 2, 3, 4}
    # except itself; the point (6, 6) reaches 8, which is clipped to the last pixel, 7
    dense = dense_points(np.array([[2.0, 2.0], [6.0, 6.0]]), 8, 8, 8)
    assert dense.shape == (30, 2)
    first = {tuple(p) for p in dense[:15].tolist()}
    assert first == {(x, y) for x in (1, 2, 3, 4) for y in (1, 2, 3, 4)} - {(2, 2)}
    assert dense[15:].max() == 7 and (dense[15:] == [7, 7]).all(axis=1).sum() == 4  # x, y in {7, 8}: 4 points clip to (7, 7)


class LeftHalfModel:
    """Wraps a real small model; its decoder answers 'the left half' (very confidently) to every prompt and
    records every point it is asked about (in model-input pixels)."""

    def __init__(self):
        self.model = build_model("shapes_student")
        self.asked = []
        original = self.model.decode

        def decode(embeddings, coords, labels, boxes=None, masks=None, multimask_output=True):
            low, iou, tokens = original(embeddings, coords, labels, boxes, masks, multimask_output)
            self.asked.append(coords[:, 0].clone())
            low = torch.full_like(low, -20.0)
            low[..., :low.shape[-1] // 2] = 20.0  # left half of the low-res grid (square image: no padding)
            return low, torch.full_like(iou, 0.99), tokens
        self.model.decode = decode


def test_hierarchical_never_prompts_covered_points():
    wrapped = LeftHalfModel()
    generator = MaskGenerator(wrapped.model, points_per_side=16, hierarchical=True)
    records = generator.generate(np.zeros((64, 64, 3), np.uint8))
    stats = generator.stats
    assert stats.covered[:, :32].all() and not stats.covered[:, 32:].any()
    sparse, dense = stats.round_points
    assert len(sparse) == 16 and len(dense) + stats.skipped_points == 16 * 15
    assert (dense[:, 0] >= 31.5).all()  # only points whose rounded pixel lies in the uncovered right half
    asked = torch.cat(wrapped.asked)[16:] / 2  # model input is 128 px for a 64 px image
    assert torch.allclose(asked, torch.as_tensor(dense, dtype=torch.float32))
    assert stats.decoder_prompts == 16 + len(dense) < 16 * 16
    assert len(records) == 1 and records[0]["area"] == 64 * 32  # NMS merges the identical masks


def test_erode_covered_by_hand():
    covered = np.zeros((5, 7), bool)
    covered[:, :5] = True  # the left 5 columns
    # a pixel stays covered when its whole 3 x 3 neighbourhood is, beyond the border counting as not covered:
    # rows 1..3 (rows 0 and 4 touch the border), columns 1..3 (column 4's neighbour 5 is not covered)
    expected = np.zeros((5, 7), bool)
    expected[1:4, 1:4] = True
    assert np.array_equal(erode_covered(covered, 1, 1), expected)
    # x only, radius 2: column c needs columns c-2..c+2 inside the image and covered: c = 2 alone, every row
    expected = np.zeros((5, 7), bool)
    expected[:, 2] = True
    assert np.array_equal(erode_covered(covered, 2, 0), expected)
    assert erode_covered(covered, 0, 0) is covered


def test_cover_margin_prompts_the_points_along_the_border_of_the_covered_area():
    wrapped = LeftHalfModel()
    image = np.zeros((64, 64, 3), np.uint8)
    official = MaskGenerator(wrapped.model, points_per_side=16, hierarchical=True)
    official.generate(image)
    margin = MaskGenerator(wrapped.model, points_per_side=16, hierarchical=True, cover_margin=0.5)
    margin.generate(image)
    # dense stride 64 / 16 = 4 px, margin 0.5 stride = 2 px: the left half [:, :32] shrinks to rows 2..61, cols 2..29
    expected = np.zeros((64, 64), bool)
    expected[2:62, 2:30] = True
    assert np.array_equal(margin.stats.covered, expected)
    dense = margin.stats.round_points[1]
    assert not expected[np.round(dense[:, 1]).astype(int), np.round(dense[:, 0]).astype(int)].any()
    # dense x, y lie at 4, 8, ..., 60 and 63 (64 clipped): the covered half keeps x 4..28 covered, but the bottom
    # row y = 63 lies within 2 px of the border, so its 7 points in the left half are prompted now
    added = set(map(tuple, dense.tolist())) - set(map(tuple, official.stats.round_points[1].tolist()))
    assert added == {(float(x), 63.0) for x in range(4, 32, 4)}
    assert margin.stats.decoder_prompts == official.stats.decoder_prompts + 7


def test_grid_mode_prompts_every_point_and_filters():
    wrapped = LeftHalfModel()
    generator = MaskGenerator(wrapped.model, points_per_side=8, points_per_batch=10)
    generator.generate(np.zeros((64, 64, 3), np.uint8))
    assert generator.stats.decoder_prompts == 64 and generator.stats.decoder_batches == 7
    strict = MaskGenerator(wrapped.model, points_per_side=8, pred_iou_thresh=0.995)
    assert strict.generate(np.zeros((64, 64, 3), np.uint8)) == []  # predicted IoU 0.99 is filtered out


def test_tau_as_probability():
    generator = MaskGenerator(build_model("shapes_student"), hierarchical=True, high_score_probability=0.5)
    assert abs(generator.high_score_thresh) < 1e-9


def test_cover_margin_must_be_a_finite_non_negative_number():
    for margin in (-0.5, float("nan"), float("inf")):
        with pytest.raises(SlimlabError, match="cover_margin="):
            MaskGenerator(build_model("shapes_student"), hierarchical=True, cover_margin=margin)
