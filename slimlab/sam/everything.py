"""Segment everything: SAM's point-grid mode and TinySAM's hierarchical mode.

Hierarchical (TinySAM, official ``hierarchical_generate``): a sparse (n/4)^2 grid first; every mask that passes the
filters marks its very confident pixels (logit > tau) as covered; then the dense points around each sparse point are
prompted only where the image is not covered yet. Confident objects are thus segmented from one point instead of ~16.

Our option ``cover_margin`` (in dense strides, default 0 = the official mode): a dense point counts as covered only
when the covered area reaches at least that far around it on every side, the image border included, so the points
along a round-1 mask's edge and along the image border are prompted anyway. A mask from one sparse point is least
reliable at its edge (a partial region ends there), and regions that run off the image are best found from points
at the border; with a small model this buys back part of the mode's mIoU loss for a few prompts
(docs/benchmarks/tinysam.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from slimlab.core.errors import SlimlabError
from slimlab.sam.mask_utils import (
    masks_to_boxes,
    nms,
    remove_small_regions,
    stability_score,
)
from slimlab.sam.model import Sam
from slimlab.sam.predictor import SamPredictor
from slimlab.sam.transforms import scale_coords


def build_point_grid(per_side: int, height: int, width: int) -> np.ndarray:
    """(per_side^2, 2) x, y points at the centres of a per_side x per_side tiling of the image."""
    offsets = (np.arange(per_side) + 0.5) / per_side
    xs, ys = np.meshgrid(offsets * width, offsets * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def dense_points(sparse: np.ndarray, per_side: int, height: int, width: int) -> np.ndarray:
    """Hierarchical round 2: around each sparse point (P, 2), the 15 points at -1..2 dense strides in x and y
    (itself excluded) -> (P * 15, 2) x / y pixels clipped to the image: 16 prompts per sparse cell in all, as many
    as the per_side x per_side grid."""
    stride = np.array([width / per_side, height / per_side])
    offsets = np.array([(dx, dy) for dy in (-1, 0, 1, 2) for dx in (-1, 0, 1, 2) if (dx, dy) != (0, 0)])
    dense = (sparse[:, None, :] + offsets[None] * stride).reshape(-1, 2)  # (P * 15, 2)
    return np.clip(dense, 0, [width - 1, height - 1])


def erode_covered(covered: np.ndarray, radius_x: int, radius_y: int) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: True where every pixel within radius_x / radius_y (a rectangle) is covered.
    Beyond the image border counts as not covered: near the border the covered area is known on one side only, so
    points there are prompted (masks of regions that run off the image come from them)."""
    if radius_x <= 0 and radius_y <= 0:
        return covered
    uncovered = torch.from_numpy(~covered).float()[None, None]  # (1, 1, H, W)
    uncovered = F.pad(uncovered, (radius_x, radius_x, radius_y, radius_y), value=1.0)  # (1, 1, H + 2ry, W + 2rx)
    near_uncovered = F.max_pool2d(uncovered, (2 * radius_y + 1, 2 * radius_x + 1), stride=1)  # (1, 1, H, W)
    return near_uncovered[0, 0].numpy() == 0


@dataclass
class EverythingStats:
    decoder_prompts: int = 0  # points sent to the mask decoder
    decoder_batches: int = 0
    skipped_points: int = 0  # dense points not prompted because they were covered
    round_points: list[np.ndarray] = field(default_factory=list)  # the points of each round, original pixels
    covered: np.ndarray | None = None  # (H, W) bool after round 1 (hierarchical only)


class MaskGenerator:
    """``generate(image)`` -> SAM-style records, sorted by area, in either mode."""

    def __init__(self, model: Sam, points_per_side: int = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, min_mask_region_area: int = 0,
                 hierarchical: bool = False, high_score_thresh: float = 8.5,
                 high_score_probability: float | None = None, cover_margin: float = 0.0) -> None:
        if points_per_side < 4 or (hierarchical and points_per_side % 4):
            raise SlimlabError(f"points_per_side={points_per_side}: need >= 4 (and a multiple of 4 for hierarchical)")
        if not (math.isfinite(cover_margin) and cover_margin >= 0):
            raise SlimlabError(f"cover_margin={cover_margin}: must be a finite number of dense strides >= 0")
        self.predictor = SamPredictor(model)
        self.points_per_side, self.points_per_batch = points_per_side, points_per_batch
        self.pred_iou_thresh, self.stability_score_thresh = pred_iou_thresh, stability_score_thresh
        self.stability_score_offset, self.box_nms_thresh = stability_score_offset, box_nms_thresh
        self.min_mask_region_area, self.hierarchical = min_mask_region_area, hierarchical
        if high_score_probability is not None:  # tau given as a probability: convert to a logit
            p = min(max(high_score_probability, 1e-6), 1 - 1e-6)
            high_score_thresh = math.log(p / (1 - p))
        self.high_score_thresh, self.cover_margin = high_score_thresh, cover_margin
        self.stats = EverythingStats()

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict]:
        self.predictor.set_image(image)
        height, width = self.predictor.original_size
        self.stats = EverythingStats()
        if not self.hierarchical:
            points = build_point_grid(self.points_per_side, height, width)
            data = self.process_points(points)
        else:
            sparse = build_point_grid(self.points_per_side // 4, height, width)
            first = self.process_points(sparse, want_covered=True)
            covered = erode_covered(first.pop("covered"),  # a positive margin is at least one pixel
                                    math.ceil(self.cover_margin * width / self.points_per_side),
                                    math.ceil(self.cover_margin * height / self.points_per_side))
            self.stats.covered = covered  # the map the dense points are checked against
            dense = dense_points(sparse, self.points_per_side, height, width)
            rows, cols = np.round(dense[:, 1]).astype(int), np.round(dense[:, 0]).astype(int)
            free = ~covered[rows, cols]
            self.stats.skipped_points = int((~free).sum())
            second = self.process_points(dense[free])
            data = {key: torch.cat([first[key], second[key]]) for key in first}
        return self.to_records(data)

    def process_points(self, points: np.ndarray, want_covered: bool = False) -> dict[str, torch.Tensor]:
        """Prompt each point alone (3 masks), filter by predicted IoU and stability, keep binary masks."""
        self.stats.round_points.append(points)
        height, width = self.predictor.original_size
        device = self.predictor.device
        kept: dict[str, list[torch.Tensor]] = {"masks": [], "iou": [], "stability": [], "points": []}
        covered = torch.zeros((height, width), dtype=torch.bool, device=device)
        image_size = self.predictor.model.image_size
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start:start + self.points_per_batch]
            coords = torch.as_tensor(scale_coords(batch, (height, width), image_size), device=device)[:, None, :]
            labels = torch.ones(coords.shape[:2], device=device)
            logits, iou, _ = self.predictor.predict_torch(coords, labels, return_logits=True)  # (B, 3, H, W)
            self.stats.decoder_prompts += len(batch)
            self.stats.decoder_batches += 1
            logits, iou = logits.flatten(0, 1), iou.flatten()
            repeated = torch.as_tensor(batch, dtype=torch.float32).repeat_interleave(3, dim=0)
            keep = iou > self.pred_iou_thresh
            stability = stability_score(logits, self.predictor.model.mask_threshold, self.stability_score_offset)
            keep &= stability >= self.stability_score_thresh
            keep_cpu = keep.cpu()
            if want_covered and keep.any():
                covered |= (logits[keep] > self.high_score_thresh).any(dim=0)
            kept["masks"].append((logits[keep] > self.predictor.model.mask_threshold).cpu())
            kept["iou"].append(iou[keep].cpu())
            kept["stability"].append(stability[keep].cpu())
            kept["points"].append(repeated[keep_cpu])
        data = {key: torch.cat(values) if values else torch.zeros(0) for key, values in kept.items()}
        if not kept["masks"]:
            data["masks"] = torch.zeros((0, height, width), dtype=torch.bool)
            data["points"] = torch.zeros((0, 2))
        if want_covered:
            data["covered"] = covered.cpu().numpy()
        return data

    def to_records(self, data: dict[str, torch.Tensor]) -> list[dict]:
        masks = data["masks"]
        if self.min_mask_region_area > 0 and len(masks):
            masks = torch.stack([torch.from_numpy(remove_small_regions(m.numpy(), self.min_mask_region_area))
                                 for m in masks])
        nonempty = masks.flatten(1).any(1) if len(masks) else torch.zeros(0, dtype=torch.bool)
        masks = masks[nonempty]
        iou, stability, points = data["iou"][nonempty], data["stability"][nonempty], data["points"][nonempty]
        boxes = masks_to_boxes(masks)
        # NMS on boxes as continuous corners (+1 so that a one-pixel mask has a non-zero area)
        keep = nms(boxes + torch.tensor([0, 0, 1, 1.0]), iou, self.box_nms_thresh)
        records = []
        for index in keep.tolist():
            x0, y0, x1, y1 = boxes[index].tolist()
            records.append({"segmentation": masks[index].numpy(), "area": int(masks[index].sum()),
                            "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                            "predicted_iou": float(iou[index]), "stability_score": float(stability[index]),
                            "point_coords": [points[index].tolist()]})
        return sorted(records, key=lambda r: -r["area"])
