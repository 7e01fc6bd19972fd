"""Weighted binary cross-entropy of the strong PAR baseline (Rethinking_of_PAR): weight exp(1 - r_i) on positives
and exp(r_i) on negatives, r_i the positive ratio of attribute i in the training labels, so rare positives count more.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PROBABILITY_FLOOR = 1e-6  # BCE on probabilities (the AAP output is a mixture, not a sigmoid) is clamped to stay finite


def positive_ratio(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(A,) share of positive labels per attribute."""
    return torch.as_tensor(np.asarray(labels), dtype=torch.float32).mean(0)


def attribute_weights(labels: torch.Tensor, ratio: torch.Tensor | None) -> torch.Tensor | None:
    """(B, A) per-element weights: exp(1 - r) where the label is 1, exp(r) where it is 0; None means plain BCE."""
    if ratio is None:
        return None
    ratio = ratio.to(labels.device)
    return torch.where(labels > 0.5, torch.exp(1 - ratio), torch.exp(ratio))


def weighted_bce_with_logits(logits: torch.Tensor, labels: torch.Tensor, ratio: torch.Tensor | None) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), labels, weight=attribute_weights(labels, ratio))


def weighted_bce_on_probabilities(probabilities: torch.Tensor, labels: torch.Tensor,
                                  ratio: torch.Tensor | None) -> torch.Tensor:
    clamped = probabilities.float().clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return F.binary_cross_entropy(clamped, labels, weight=attribute_weights(labels, ratio))


def attribute_loss(output: dict[str, torch.Tensor], labels: torch.Tensor, ratio: torch.Tensor | None,
                   own_loss_weight: float = 0.5) -> torch.Tensor:
    """Loss on the final prediction; with AAP also ``own_loss_weight`` x the loss on the branches' own predictions."""
    if "context" not in output:
        return weighted_bce_with_logits(output["logits"], labels, ratio)
    loss = weighted_bce_on_probabilities(output["probabilities"], labels, ratio)
    if own_loss_weight > 0:
        loss = loss + own_loss_weight * weighted_bce_with_logits(output["logits"], labels, ratio)
    return loss
