import numpy as np
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.par.metrics import attribute_metrics, expected_calibration_error

LABELS = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
PROBABILITIES = np.array([[0.9, 0.2, 0.4], [0.6, 0.7, 0.1], [0.8, 0.3, 0.6], [0.1, 0.4, 0.7]])


def test_metrics_match_hand_computed_values():
    # Predictions at 0.5: [[1,0,0], [1,1,0], [1,0,1], [0,0,1]].
    # Attribute 0: TPR 2/2, TNR 1/2 -> 0.75; attribute 1: TPR 1/2, TNR 2/2 -> 0.75; attribute 2: TPR 1/2, TNR 1/2 -> 0.5.
    # Images: |AND|/|OR| = 1/2, 1/2, 1/3, 1; precision 1, 1/2, 1/2, 1; recall 1/2, 1, 1/2, 1.
    metrics = attribute_metrics(torch.tensor(PROBABILITIES), torch.tensor(LABELS))
    assert metrics["per_attribute_mA"] == pytest.approx([0.75, 0.75, 0.5])
    assert metrics["mA"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx((0.5 + 0.5 + 1 / 3 + 1) / 4)
    assert metrics["precision"] == pytest.approx(0.75)
    assert metrics["recall"] == pytest.approx(0.75)
    assert metrics["f1"] == pytest.approx(0.75)


def test_f1_comes_from_mean_precision_and_recall_and_threshold_is_inclusive():
    labels = np.array([[1, 1], [1, 0]])
    probabilities = np.array([[0.5, 0.0], [0.9, 0.9]])  # 0.5 counts as present
    # image 0: pred {0}, gt {0,1}: P 1, R 1/2; image 1: pred {0,1}, gt {0}: P 1/2, R 1 -> mean P = mean R = 3/4
    metrics = attribute_metrics(probabilities, labels)
    assert metrics["precision"] == pytest.approx(0.75) and metrics["recall"] == pytest.approx(0.75)
    assert metrics["f1"] == pytest.approx(0.75)  # per-image F1 would average 2/3, not 3/4
    # attribute 1: one positive missed (TPR 0), one negative predicted present (TNR 0) -> 0
    assert metrics["per_attribute_mA"][1] == pytest.approx(0.0)


def test_empty_prediction_has_zero_precision_and_missing_class_counts_as_zero_rate():
    metrics = attribute_metrics(np.zeros((2, 1)), np.zeros((2, 1)))
    assert metrics["precision"] == 0.0 and metrics["recall"] == 0.0
    assert metrics["mA"] == pytest.approx(0.5)  # TNR 1, TPR 0 (no positives)


def test_expected_calibration_error_by_hand():
    # bin [0.8, 0.9): confidences 0.8, 0.8 with outcomes 1, 0 -> |0.8 - 0.5| * 2/4; bin [0.2, 0.3): 0.2, 0.2 vs 0, 0
    assert expected_calibration_error(np.array([0.8, 0.8, 0.2, 0.2]), np.array([1, 0, 0, 0])) == pytest.approx(
        0.3 * 0.5 + 0.2 * 0.5)


def test_bad_shapes_and_labels_are_named():
    with pytest.raises(SlimlabError, match="probabilities"):
        attribute_metrics(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(SlimlabError, match="0 or 1"):
        attribute_metrics(np.zeros((2, 2)), np.full((2, 2), -1))
