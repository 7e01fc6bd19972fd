"""Pedestrian-attribute metrics exactly as the field reports them (Rethinking_of_PAR conventions).

* label-based **mA**: mean over attributes of (TPR + TNR) / 2;
* instance-based **accuracy**: mean over images of |pred AND gt| / |pred OR gt|;
* instance-based **precision** and **recall**: means over images;
* **F1** = 2 P R / (P + R) from the mean precision and recall (not the mean of per-image F1s).

An attribute with no positives (or no negatives) in the evaluated set would divide by zero; like the reference
code we add a tiny epsilon, so its TPR (or TNR) counts as 0. An image with no predicted positives has precision 0.
"""

from __future__ import annotations

import numpy as np
import torch

from slimlab.core.errors import SlimlabError

EPSILON = 1e-20


def attribute_metrics(probabilities: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                      threshold: float = 0.5) -> dict[str, float | list[float]]:
    """mA, accuracy, precision, recall, F1 (all in [0, 1]) and per-attribute mA for (N, A) probabilities."""
    scores = _as_array(probabilities, "probabilities")
    truth = _as_array(labels, "labels")
    if scores.shape != truth.shape or scores.ndim != 2:
        raise SlimlabError(f"metrics: probabilities {scores.shape} and labels {truth.shape} must both be (images, attributes)")
    if not np.isin(truth, (0, 1)).all():
        raise SlimlabError("metrics: labels must be 0 or 1 (drop unlabeled / -1 entries before evaluating)")
    predicted = scores >= threshold  # (N, A)
    truth = truth.astype(bool)

    # Label-based: per attribute, over images.
    positives = truth.sum(0)                                   # (A,)
    negatives = (~truth).sum(0)
    true_positives = (predicted & truth).sum(0)
    true_negatives = (~predicted & ~truth).sum(0)
    per_attribute = (true_positives / (positives + EPSILON) + true_negatives / (negatives + EPSILON)) / 2  # (A,)

    # Instance-based: per image, over attributes.
    intersection = (predicted & truth).sum(1)                  # (N,)
    union = (predicted | truth).sum(1)
    accuracy = intersection / (union + EPSILON)
    precision = intersection / (predicted.sum(1) + EPSILON)
    recall = intersection / (truth.sum(1) + EPSILON)
    mean_precision, mean_recall = float(precision.mean()), float(recall.mean())
    f1 = 2 * mean_precision * mean_recall / (mean_precision + mean_recall + EPSILON)
    return {"mA": float(per_attribute.mean()), "accuracy": float(accuracy.mean()), "precision": mean_precision,
            "recall": mean_recall, "f1": float(f1), "per_attribute_mA": [float(v) for v in per_attribute]}


def expected_calibration_error(probabilities: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                               bins: int = 10) -> float:
    """ECE over every (image, attribute) binary decision: sum over bins of |mean confidence - frequency| * share."""
    scores = _as_array(probabilities, "probabilities").ravel()
    truth = _as_array(labels, "labels").ravel()
    index = np.minimum((scores * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            error += abs(scores[chosen].mean() - truth[chosen].mean()) * chosen.mean()
    return float(error)


def _as_array(values: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float64)
