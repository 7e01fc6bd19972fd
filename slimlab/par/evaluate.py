"""Evaluation: run a model over a dataset and report the standard PAR metrics (plus ECE and weak-attribute mA)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from slimlab.par.data import to_model_input
from slimlab.par.metrics import attribute_metrics, expected_calibration_error


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, dataset: Dataset, device: torch.device,
                          batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, A) final probabilities and (N, A) labels, in dataset order."""
    was_training = model.training
    model.eval()
    probabilities, labels = [], []
    for images, batch_labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probabilities.append(model(to_model_input(images.to(device)))["probabilities"].float().cpu())
        labels.append(batch_labels)
    model.train(was_training)
    return torch.cat(probabilities), torch.cat(labels)


def evaluate_model(model: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 128,
                   weak_attributes: tuple[int, ...] = ()) -> dict:
    probabilities, labels = predict_probabilities(model, dataset, device, batch_size)
    metrics = attribute_metrics(probabilities, labels)
    metrics["ece"] = expected_calibration_error(probabilities, labels)
    if weak_attributes:
        metrics["weak_mA"] = float(np.mean([metrics["per_attribute_mA"][i] for i in weak_attributes]))
    return metrics
