import math

import torch

from slimlab.sam.losses import (
    binary_iou,
    dice_loss,
    distillation_loss,
    focal_loss,
    hard_mask_weight,
)
from slimlab.sam.prompts import (
    gt_hard_prompts,
    sample_points,
    teacher_correction_points,
    upsample,
)


def square(size=16, y0=4, y1=12, x0=4, x1=12):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_sample_points_inside_region_and_fallback():
    generator = torch.Generator().manual_seed(0)
    region = square()[None].repeat(50, 1, 1)
    points = sample_points(region, region, generator)
    assert ((points >= 4) & (points < 12)).all()
    assert len({tuple(p) for p in points.tolist()}) > 20  # spread over the 64 pixels, not one point
    empty = torch.zeros_like(region)
    fallback = sample_points(empty, region, generator)  # empty miss region -> uniform in the GT mask
    assert ((fallback >= 4) & (fallback < 12)).all()


def test_gt_sampler_adds_points_only_in_the_miss_region():
    gt = square()[None].repeat(64, 1, 1)  # (P, 16, 16)
    calls = []

    def decode(embeddings, coords, labels, mask_input):
        # the "student" always predicts the left half of the square: the miss region is columns 8..11
        calls.append(mask_input)
        logits = torch.full((len(coords), 3, 4, 4), -10.0)
        logits[:, :, 1:3, 1:2] = 10.0  # low-res cells 1-2 x 1 = pixels rows 4-11, cols 4-7
        return logits, torch.tensor([[0.1, 0.9, 0.2]]).repeat(len(coords), 1)
    generator = torch.Generator().manual_seed(0)
    coords, labels, mask_prompt = gt_hard_prompts(decode, torch.zeros(64, 1), gt, generator, max_rounds=9)
    first = coords[:, 0]
    assert ((first >= 4) & (first < 12)).all() and (labels[:, 0] == 1).all()
    later = labels[:, 1:] == 1
    assert later.any() and (labels[:, 1:][~later] == -1).all()
    added = coords[:, 1:][later]
    # the prediction as the sampler sees it: bilinear upsampling of the low-res logits (it rounds the corners)
    logits = torch.full((1, 4, 4), -10.0)
    logits[:, 1:3, 1:2] = 10.0
    miss = square() & ~(upsample(logits, 16)[0] > 0)
    assert miss[4:12, 8:12].all() and miss.sum() == 32 + 4  # the right half plus the four rounded-off corners
    assert miss[added[:, 1].long(), added[:, 0].long()].all()
    assert (added[:, 0] >= 8).float().mean() > 0.75
    rounds = later.sum(1)
    assert rounds.max() <= 9 and len(set(rounds.tolist())) > 3  # rounds drawn from {0..9} per sample
    assert (later[:, :-1].int() >= later[:, 1:].int()).all()  # points accumulate in order
    assert mask_prompt.shape == (64, 1, 4, 4) and torch.all(mask_prompt[rounds == 0] == 0)
    assert torch.all(mask_prompt[rounds > 0][:, 0, 1, 1] == 10.0)  # previous logits of the best-IoU mask
    assert len(calls) == int(rounds.max())


def test_gt_sampler_with_fixed_rounds_reports_every_round():
    import pytest
    gt = square()[None].repeat(3, 1, 1)

    def decode(embeddings, coords, labels, mask_input):  # predicts nothing: the miss region is the whole square
        return torch.full((len(coords), 3, 4, 4), -10.0), torch.tensor([[0.1, 0.9, 0.2]]).repeat(len(coords), 1)
    seen = []
    coords, labels, _ = gt_hard_prompts(decode, torch.zeros(3, 1), gt, torch.Generator().manual_seed(0), slots=4,
                                        rounds=torch.tensor([0, 2, 3]),
                                        on_round=lambda step, prediction, points, active: seen.append(
                                            (step, active.tolist(), bool(prediction.any()))))
    assert seen == [(0, [False, True, True], False), (1, [False, True, True], False), (2, [False, False, True], False)]
    assert (labels == 1).sum(1).tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="rounds of shape"):
        gt_hard_prompts(decode, torch.zeros(3, 1), gt, torch.Generator(), slots=4, rounds=torch.tensor([0, 4, 1]))


def test_teacher_sampler_clicks_where_they_disagree():
    student = square(x0=4, x1=12)[None]  # student says columns 4-11
    teacher = square(x0=8, x1=16)[None]  # teacher says columns 8-15
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        point, label = teacher_correction_points(student, teacher, square()[None], generator)
        x = point[0, 0]
        if x < 8:  # student-only pixels: negative click
            assert label.item() == 0.0 and x >= 4
        else:  # teacher-only pixels: positive click
            assert label.item() == 1.0 and x >= 12
    point, label = teacher_correction_points(student, student, square()[None], generator)
    assert label.item() == 1.0  # no disagreement: positive point in the GT


def test_hard_mask_weight_by_hand():
    weight = hard_mask_weight(torch.tensor([0.8, 1.0, 0.0]), torch.tensor([0.8, 0.5, 0.6]))
    expected = torch.sigmoid(torch.tensor([0.0, 1.0, -1.0]))  # equal, student lags (ratio 2), teacher misses
    assert torch.allclose(weight, expected, atol=1e-5)


def test_focal_and_dice_by_hand():
    logits = torch.tensor([[[[0.0, 0.0]]]])  # p = 0.5 on two pixels
    target = torch.tensor([[[[1.0, 0.0]]]])
    # focal: each pixel ce = ln 2, (1 - p_t)^2 = 0.25; alpha 0.25 for the positive, 0.75 for the negative
    expected = (0.25 * math.log(2) * 0.25 + 0.75 * math.log(2) * 0.25) / 2
    assert torch.allclose(focal_loss(logits, target), torch.tensor([[expected]]))
    # dice: 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    assert torch.allclose(dice_loss(logits, target), torch.tensor([[1 - 2 / 3]]))
    assert binary_iou(torch.zeros(2, 2), torch.zeros(2, 2)) == 1.0


def test_distillation_loss_by_hand():
    student = {"embeddings": torch.zeros(1, 2, 2, 2), "tokens": torch.zeros(1, 5, 2),
               "logits": torch.tensor([[[[1.0, -1.0]], [[1.0, 1.0]]]])}  # (P=1, M=2, 1, 2)
    teacher = {"embeddings": torch.ones(1, 2, 2, 2), "tokens": torch.full((1, 5, 2), 2.0),
               "logits": torch.tensor([[[[3.0, -1.0]], [[1.0, 1.0]]]])}
    gt = torch.tensor([[[True, False]]])
    total, parts = distillation_loss(student, teacher, gt, (1.0, 0.5, 2.0), hard_mask_weighting=False)
    # L_emb 1, L_tok 2, per-mask L1 = [1, 0] summed over masks = 1
    assert math.isclose(total.item(), 1 * 1 + 0.5 * 2 + 2.0 * 1, rel_tol=1e-6)
    total, parts = distillation_loss(student, teacher, gt, (0.0, 0.0, 1.0), hard_mask_weighting=True)
    # both masks: teacher IoU = student IoU (1.0 and 0.5) -> H = 0.5 each; 0.5 * 1 + 0.5 * 0
    assert math.isclose(total.item(), 0.5, rel_tol=1e-5) and math.isclose(parts["mean_h"], 0.5, rel_tol=1e-5)


def test_every_hard_prompt_mode_trains_one_step():
    import numpy as np

    from slimlab.sam.build import build_model
    from slimlab.sam.shapes import ShapesDataset
    from slimlab.sam.train import TrainConfig, distill
    data = ShapesDataset(2)
    torch.manual_seed(0)
    teacher, student = build_model("shapes_student"), build_model("shapes_student")
    before = [p.clone() for p in student.image_encoder.parameters()]
    for mode in ("gt", "teacher", "off"):
        log = distill(teacher, student, data, TrainConfig(steps=1, images_per_step=1, prompts_per_image=2,
                                                          hard_prompts=mode, max_rounds=2))
        assert len(log) == 1 and np.isfinite(log[0]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, student.image_encoder.parameters()))


def test_iou_head_loss_is_squared_error_by_hand():
    # GT: a 2x2 square in a 4x4 image. Mask 0 is exact, mask 1 empty, mask 2 the whole image: actual IoUs
    # (1, 0, 4/16). Predicted (0.5, 0, 0.25): squared errors (0.25, 0, 0) -> mean 1/12. The best mask (0) has
    # near-zero focal and dice losses (saturated logits), so the total is 1/12 up to ~1e-8.
    from slimlab.sam.losses import mask_and_iou_loss
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, 1:3, 1:3] = True
    logits = torch.stack([torch.where(gt[0], 30.0, -30.0), torch.full((4, 4), -30.0), torch.full((4, 4), 30.0)])[None]
    loss = mask_and_iou_loss(logits, torch.tensor([[0.5, 0.0, 0.25]]), gt, focal_weight=1.0)
    assert abs(loss.item() - 1 / 12) < 1e-6
