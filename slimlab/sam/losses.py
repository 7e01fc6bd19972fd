"""Losses of TinySAM's full-stage distillation and SAM's mask training, each a few lines of maths."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: (P, M, H, W), (P, 1 or M, H, W) -> (P, M)."""
    probability = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    p_t = probability * target + (1 - probability) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - (2|A.B| + 1) / (|A| + |B| + 1) on sigmoid probabilities: -> (P, M)."""
    probability = logits.sigmoid().flatten(2)
    target = target.expand_as(logits).flatten(2)
    numerator = 2 * (probability * target).sum(-1)
    return 1 - (numerator + 1) / (probability.sum(-1) + target.sum(-1) + 1)


def binary_iou(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of bool masks along the last two axes (broadcasting); empty union counts as IoU 1."""
    prediction, target = prediction.bool(), target.bool()
    intersection = (prediction & target).flatten(-2).sum(-1).float()
    union = (prediction | target).flatten(-2).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def hard_mask_weight(teacher_iou: torch.Tensor, student_iou: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """H = sigmoid(IoU(teacher, GT) / (IoU(student, GT) + eps) - 1): 0.5 when equal, -> 1 when the student lags."""
    return torch.sigmoid(teacher_iou / (student_iou + eps) - 1).detach()


def mask_and_iou_loss(logits: torch.Tensor, iou_predictions: torch.Tensor, gt: torch.Tensor,
                      focal_weight: float = 20.0, dice_weight: float = 1.0) -> torch.Tensor:
    """SAM's supervised loss: focal + dice on the best of the M masks (ambiguity-aware) + MSE on the IoU head.

    logits (P, M, H, W) at GT resolution, iou_predictions (P, M), gt (P, H, W) -> scalar.
    """
    target = gt[:, None].float()
    per_mask = focal_weight * focal_loss(logits, target) + dice_weight * dice_loss(logits, target)  # (P, M)
    best = per_mask.argmin(dim=1)
    rows = torch.arange(len(best), device=best.device)
    actual_iou = binary_iou(logits.detach() > 0, gt[:, None])  # (P, M)
    # MSE as SAM: the IoU head then predicts the expected IoU of each token (L1 would give the median, which is
    # 0 for the tokens that win only a third of the time, and ranking the masks by it fails)
    return per_mask[rows, best].mean() + F.mse_loss(iou_predictions, actual_iou)


def distillation_loss(student: dict, teacher: dict, gt: torch.Tensor | None, weights: tuple[float, float, float],
                      hard_mask_weighting: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """a * L1(embeddings) + b * L1(decoder tokens) + c * sum_i H_i * L1(mask logits_i).

    ``student``/``teacher`` hold "embeddings" (B, C, h, w), "tokens" (P, 5, C), "logits" (P, M, H, W) at GT size.
    Without GT (or without hard weighting) H_i = 1.
    """
    a, b, c = weights
    embedding = F.l1_loss(student["embeddings"], teacher["embeddings"])
    token = F.l1_loss(student["tokens"], teacher["tokens"])
    per_mask = (student["logits"] - teacher["logits"]).abs().flatten(2).mean(-1)  # (P, M)
    if hard_mask_weighting and gt is not None:
        weight = hard_mask_weight(binary_iou(teacher["logits"] > 0, gt[:, None]),
                                  binary_iou(student["logits"].detach() > 0, gt[:, None]))
    else:
        weight = torch.ones_like(per_mask)
    output = (weight * per_mask).sum(1).mean()
    total = a * embedding + b * token + c * output
    return total, {"embedding": embedding.item(), "token": token.item(), "output": output.item(),
                   "mean_h": weight.mean().item()}
