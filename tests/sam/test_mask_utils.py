import numpy as np
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.mask_utils import (
    box_iou,
    mask_iou,
    mask_to_rle,
    masks_to_boxes,
    nms,
    remove_small_regions,
    rle_to_mask,
    stability_score,
)


def test_nms_by_hand():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 5], [20, 20, 30, 30.0]])
    scores = torch.tensor([0.8, 0.9, 0.7, 0.1])
    # IoU(b0, b1) = 81 / 119 = 0.68; IoU(b1, b2) = 36 / 114 = 0.32; IoU(b0, b2) = 50 / 100 = 0.5
    assert torch.allclose(box_iou(boxes[:1], boxes[1:2]), torch.tensor([[81 / 119]]))
    assert nms(boxes, scores, 0.6).tolist() == [1, 2, 3]  # b0 overlaps the better b1 by 0.68 > 0.6
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2, 3]
    assert nms(boxes, scores, 0.3).tolist() == [1, 3]  # IoU(b1, b2) = 0.32 > 0.3 now removes b2 too
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_boxes_rle_iou_by_hand():
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    mask[0, 0] = True
    # column-major: col0 = 1,0,0,0 ; col1 = 0000 ; col2 = 0110 ; col3 = 0110 ; col4 = 0000
    assert mask_to_rle(mask) == {"size": [4, 5], "counts": [0, 1, 8, 2, 2, 2, 5]}
    assert np.array_equal(rle_to_mask(mask_to_rle(mask)), mask)
    assert masks_to_boxes(torch.from_numpy(mask)[None]).tolist() == [[0, 0, 3, 2]]
    assert masks_to_boxes(torch.zeros(1, 4, 5, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]
    other = torch.zeros(1, 4, 5, dtype=torch.bool)
    other[0, 1:3, 3:5] = True  # overlaps 2 of the 5 + 4 pixels
    assert torch.allclose(mask_iou(torch.from_numpy(mask)[None], other), torch.tensor([[2 / 7]]))


def test_stability_score_by_hand():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    # above +1: 1 pixel; above -1: 3 pixels
    assert torch.allclose(stability_score(logits, 0.0, 1.0), torch.tensor([1 / 3]))


def test_remove_small_regions_fills_holes_and_drops_islands():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[6, 6] = False  # a one-pixel hole
    mask[17, 17] = True  # a one-pixel island
    cleaned = remove_small_regions(mask, 5)
    assert cleaned[6, 6] and not cleaned[17, 17] and cleaned[2:12, 2:12].all()


def test_rle_runs_must_be_non_negative_and_cover_the_mask_exactly():
    # 2 x 3 mask: runs [1, 2, 3] cover 6 pixels; column-major so the 2 ones are (1, 0) and (0, 1)
    assert rle_to_mask({"size": [2, 3], "counts": [1, 2, 3]}).tolist() == [[False, True, False],
                                                                           [True, False, False]]
    with pytest.raises(SlimlabError, match=r"ann.json: RLE run lengths must be >= 0, found -2"):
        rle_to_mask({"size": [2, 3], "counts": [5, -2, 3]}, "ann.json")  # sums to 6 but runs backwards
    with pytest.raises(SlimlabError, match="RLE runs cover 5 pixels but the size 2x3 has 6"):
        rle_to_mask({"size": [2, 3], "counts": [1, 2, 2]})
    with pytest.raises(SlimlabError, match="RLE runs cover 7 pixels"):
        rle_to_mask({"size": [2, 3], "counts": [1, 2, 4]})
    with pytest.raises(SlimlabError, match="'counts' must be a list of integers"):
        rle_to_mask({"size": [2, 3], "counts": [1.5, 4.5]})
    with pytest.raises(SlimlabError, match="'size' must be"):
        rle_to_mask({"size": [6], "counts": [6]})
