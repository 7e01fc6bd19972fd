"""Distillation diagnostics (spec 5.1): where TinySAM's hard prompt sampler puts its points round after round, and
how the hard mask weights H_i spread over a test set. Both read trained models on held-out images."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from slimlab.sam.evaluate import decode_one_prompt, samples_with_masks
from slimlab.sam.losses import binary_iou, hard_mask_weight
from slimlab.sam.model import Sam
from slimlab.sam.prompts import gt_hard_prompts
from slimlab.sam.train import decoder_fn, upsample_all


def inside_distances(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool -> (K, H, W) float: each mask pixel's distance to the nearest pixel outside the mask (1 on
    the boundary; the image border counts as outside), 0 off the mask."""
    return np.stack([cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
                     for mask in masks])


@torch.no_grad()
def sampler_diagnostics(student: Sam, dataset, rounds: int = 9, seed: int = 0) -> dict[str, list]:
    """Run the ``gt`` hard prompt sampler with ``student`` decoding for exactly ``rounds`` rounds on every
    instance of ``dataset``. Entry r describes point r (0: the first point, uniform in the GT mask; r >= 1: the
    point added in round r):

    - "boundary_distance": mean distance of the points to the GT boundary in pixels (``inside_distances``);
    - "in_miss_region": share drawn from the student's miss region (the rest fell back to a uniform GT point, as
      the student's mask already covered the GT); None for point 0;
    - "iou_before": mIoU of the student's mask that point r corrects (after r points); None for point 0.
    """
    generator = torch.Generator().manual_seed(seed)
    distances, in_miss, iou_before = [[] for _ in range(rounds + 1)], [[] for _ in range(rounds)], \
        [[] for _ in range(rounds)]
    for sample, image, gt in samples_with_masks(student, dataset):
        embeddings = student.encode(student.preprocess(image))  # (1, C, h, w)
        distance = torch.from_numpy(inside_distances(sample.masks))  # (K, H, W)
        rows = torch.arange(len(gt))

        def record(step, prediction, new_points, active):
            x, y = new_points[:, 0].long().cpu(), new_points[:, 1].long().cpu()
            miss = (gt.bool() & ~prediction).cpu()  # (K, H, W)
            distances[step + 1].append(distance[rows, y, x])
            in_miss[step].append(miss[rows, y, x].float())
            iou_before[step].append(binary_iou(prediction, gt).cpu())
        coords, _, _ = gt_hard_prompts(decoder_fn(student), embeddings.expand(len(gt), -1, -1, -1), gt, generator,
                                       slots=rounds + 1, rounds=torch.full((len(gt),), rounds, device=gt.device),
                                       on_round=record)
        first = coords[:, 0].long().cpu()
        distances[0].append(distance[rows, first[:, 1], first[:, 0]])

    def means(values: list[list[torch.Tensor]]) -> list[float | None]:
        return [float(torch.cat(v).float().mean()) if v else None for v in values]
    return {"boundary_distance": means(distances), "in_miss_region": [None, *means(in_miss)],
            "iou_before": [None, *means(iou_before)]}


@torch.no_grad()
def hard_mask_weights(teacher: Sam, student: Sam, dataset) -> np.ndarray:
    """TinySAM's H_i = sigmoid(IoU(M_T_i, GT) / (IoU(M_S_i, GT) + eps) - 1) for every multimask output i of
    teacher and student, one distance-transform centre point per instance of ``dataset`` -> (K, M)."""
    weights = []
    for sample, image, gt in samples_with_masks(student, dataset):
        per_model = []
        for model in (teacher, student):
            logits, _ = decode_one_prompt(model, model.encode(model.preprocess(image)), sample.masks, "point")
            masks = upsample_all(logits, gt.shape[-1]) > 0  # (K, M, H, W)
            per_model.append(binary_iou(masks, gt[:, None]))  # (K, M)
        weights.append(hard_mask_weight(*per_model).cpu().numpy())
    return np.concatenate(weights) if weights else np.zeros((0, 0))
