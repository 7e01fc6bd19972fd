"""Prompt sampling: random training prompts and TinySAM's online hard prompt sampling (both variants).

All coordinates are model-input pixels (x, y). Points are accumulated in a fixed-size (P, N, 2) tensor whose
unused slots carry label -1 ("not a point"), so a batch of prompts with different click counts runs as one batch.
"""

from __future__ import annotations

import torch


def sample_points(regions: torch.Tensor, fallback: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One pixel drawn uniformly from each (H, W) region in ``regions`` (P, H, W); an empty region falls back to
    ``fallback`` (e.g. the GT mask), and an empty fallback to the image centre. -> (P, 2) x, y pixel centres."""
    regions = regions.bool()
    empty = ~regions.flatten(1).any(1)
    regions = torch.where(empty[:, None, None], fallback.bool(), regions)
    flat = regions.flatten(1)
    flat = torch.where(flat.any(1, keepdim=True), flat, torch.ones_like(flat))  # nothing anywhere: whole image
    # the k-th pixel of the region for k uniform in [0, count): a cumulative count and a binary search
    cumulative = flat.cumsum(dim=1)  # (P, H*W)
    counts = cumulative[:, -1]
    draw = (torch.rand(len(flat), generator=generator).to(flat.device) * counts).long().clamp(max=counts - 1)
    index = torch.searchsorted(cumulative, (draw + 1)[:, None])[:, 0]
    width = regions.shape[-1]
    return torch.stack([index % width, index // width], dim=1).float()


def empty_points(count: int, slots: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(count, slots, 2, device=device), -torch.ones(count, slots, device=device)


def masks_to_box_prompts(masks: torch.Tensor, generator: torch.Generator, jitter: float = 0.1) -> torch.Tensor:
    """(P, H, W) -> (P, 4) tight boxes with noise of ``jitter`` x box side on each coordinate (SAM training)."""
    from slimlab.sam.mask_utils import masks_to_boxes

    boxes = masks_to_boxes(masks.bool())
    sides = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2).clamp(min=1)
    noise = (torch.rand(boxes.shape, generator=generator) * 2 - 1).to(boxes.device) * jitter * sides
    limit = masks.shape[-1] - 1
    boxes = (boxes + noise).clamp(0, limit)
    return torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], dim=1)


def best_mask(logits: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """(P, M, h, w) logits, (P, M) predicted IoU -> (P, h, w) logits of the mask with the highest predicted IoU."""
    return logits[torch.arange(len(logits)), iou.argmax(dim=1)]


def upsample(low_res: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(low_res[:, None], (size, size), mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def gt_hard_prompts(decode, embeddings: torch.Tensor, gt: torch.Tensor, generator: torch.Generator,
                    max_rounds: int = 9, slots: int = 10, rounds: torch.Tensor | None = None,
                    on_round=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TinySAM's sampler: P0 uniform in the GT mask; then, for a per-sample number of rounds drawn uniformly from
    {0..max_rounds}, run ``decode`` (the student) and add a positive point drawn uniformly from the miss region
    GT minus prediction. Points accumulate; the previous low-res logits become the mask prompt.

    ``decode(embeddings, coords, labels, mask_input)`` -> (logits (P, M, h, w), iou (P, M)).
    ``rounds`` (P,): fixed round counts instead of the uniform draw (sampler diagnostics); ``on_round(step,
    prediction (P, H, W) bool, new_points (P, 2), active (P,) bool)`` is called after each round's sampling.
    -> coords (P, slots, 2), labels (P, slots), mask prompt (P, 1, h, w) (zeros where no round was run).
    """
    count, size = gt.shape[0], gt.shape[-1]
    coords, labels = empty_points(count, slots, gt.device)
    coords[:, 0], labels[:, 0] = sample_points(gt, gt, generator), 1.0
    if rounds is None:
        rounds = torch.randint(0, max_rounds + 1, (count,), generator=generator).to(gt.device)
    elif rounds.shape != (count,) or (count and int(rounds.max()) >= slots):
        raise ValueError(f"rounds of shape {tuple(rounds.shape)}: need ({count},), each below {slots} slots")
    mask_prompt, has_mask = None, torch.zeros(count, dtype=torch.bool, device=gt.device)
    for step in range(int(rounds.max().item()) if count else 0):
        logits, iou = decode(embeddings, coords, labels, mask_prompt)
        chosen = best_mask(logits, iou)  # (P, h, w)
        prediction = upsample(chosen, size) > 0
        new_points = sample_points(gt.bool() & ~prediction, gt, generator)
        active = rounds > step
        coords[active, step + 1] = new_points[active]
        labels[active, step + 1] = 1.0
        if on_round is not None:
            on_round(step, prediction, new_points, active)
        mask_prompt = chosen[:, None] if mask_prompt is None else torch.where(
            active[:, None, None, None], chosen[:, None], mask_prompt)
        has_mask |= active
    if mask_prompt is None:
        return coords, labels, None
    return coords, labels, mask_prompt * has_mask[:, None, None, None]


def teacher_correction_points(student_mask: torch.Tensor, teacher_mask: torch.Tensor, gt: torch.Tensor,
                              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """EdgeSAM's prompt-in-the-loop click: drawn uniformly from where student and teacher disagree; a pixel the
    student calls positive and the teacher negative gives a negative click, the reverse a positive one.
    (P, H, W) bool masks -> (P, 2) points and (P,) labels; no disagreement falls back to a positive GT point."""
    student_mask, teacher_mask = student_mask.bool(), teacher_mask.bool()
    disagreement = student_mask ^ teacher_mask
    points = sample_points(disagreement, gt, generator)
    x, y = points[:, 0].long(), points[:, 1].long()
    rows = torch.arange(len(points), device=points.device)
    negative = student_mask[rows, y, x] & ~teacher_mask[rows, y, x] & disagreement.flatten(1).any(1)
    return points, torch.where(negative, 0.0, 1.0)
