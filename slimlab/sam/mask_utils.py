"""Mask utilities written here: boxes, IoU, stability score, box NMS, COCO RLE, overlays."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

from slimlab.core.errors import SlimlabError


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) x0, y0, x1, y1 inclusive pixel boxes; an empty mask gives [0, 0, 0, 0]."""
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], 4), device=masks.device)
    height, width = masks.shape[-2:]
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, H), (N, W)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    y0 = torch.where(rows, ys, height).min(dim=1).values
    y1 = torch.where(rows, ys, -1).max(dim=1).values
    x0 = torch.where(cols, xs, width).min(dim=1).values
    x1 = torch.where(cols, xs, -1).max(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where((rows.any(1))[:, None], boxes, torch.zeros_like(boxes))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU between (N, 4) and (M, 4) boxes as continuous x0, y0, x1, y1 -> (N, M)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), torch.zeros_like(union))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds ``iou_threshold``.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() == 0:
        return order
    overlaps = box_iou(boxes[order], boxes[order])  # (N, N) in score order
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i].cpu() > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU between (N, H, W) and (M, H, W) bool masks -> (N, M); two empty masks count as IoU 0."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    intersection = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.zeros_like(union))


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``threshold + offset`` and ``threshold - offset``: (N, H, W) -> (N,)."""
    intersections = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int64)
    unions = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int64)
    return torch.where(unions > 0, intersections / unions.clamp(min=1), torch.zeros_like(unions, dtype=torch.float))


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major (Fortran) flattening, starting with zeros."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    boundaries = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(boundaries).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [height, width], "counts": counts}


def rle_to_mask(rle: dict, where: str = "RLE") -> np.ndarray:
    """COCO uncompressed RLE -> (H, W) bool. The runs must be non-negative integers covering exactly H * W
    pixels: a shorter or longer list means the mask was cut or belongs to another image size, so it is an
    error (named by ``where``) rather than a silently padded or cropped mask."""
    size, counts = rle.get("size"), rle.get("counts")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or \
            not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 0 for v in size):
        raise SlimlabError(f"{where}: RLE 'size' must be [height, width] with non-negative integers, got {size!r}")
    if not isinstance(counts, (list, tuple)) or \
            not all(isinstance(v, Integral) and not isinstance(v, bool) for v in counts):
        raise SlimlabError(f"{where}: RLE 'counts' must be a list of integers (or a COCO compressed string)")
    negative = [int(v) for v in counts if v < 0]
    if negative:
        raise SlimlabError(f"{where}: RLE run lengths must be >= 0, found {negative[0]}")
    height, width = (int(v) for v in size)
    covered = sum(int(v) for v in counts)
    if covered != height * width:
        raise SlimlabError(f"{where}: RLE runs cover {covered} pixels but the size {height}x{width} has "
                           f"{height * width}")
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for count in counts:
        count = int(count)
        flat[position:position + count] = value
        position += count
        value = not value
    return flat.reshape((width, height)).T


def remove_small_regions(mask: np.ndarray, area_threshold: int) -> np.ndarray:
    """Fill holes and drop islands smaller than ``area_threshold`` pixels (SAM's optional cleanup)."""
    import cv2

    out = mask.astype(bool).copy()
    for fill_holes in (True, False):
        region = (~out if fill_holes else out).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        small = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] < area_threshold]
        if small:
            out[np.isin(labels, small)] = fill_holes
    return out


def overlay(image: np.ndarray, masks: list[np.ndarray], seed: int = 0, alpha: float = 0.5) -> np.ndarray:
    """Blend each mask onto the (H, W, 3) uint8 image in its own colour, largest first, with outlines."""
    import cv2

    rng = np.random.default_rng(seed)
    out = image.astype(np.float32).copy()
    for mask in sorted(masks, key=lambda m: -int(m.sum())):
        colour = rng.integers(40, 256, size=3).astype(np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, tuple(float(c) for c in colour), 1)
    return out.clip(0, 255).astype(np.uint8)
