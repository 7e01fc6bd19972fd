import math

import numpy as np
import pytest
import torch

from slimlab.sam.diagnostics import hard_mask_weights, inside_distances, sampler_diagnostics
from slimlab.sam.shapes import ShapesSample


def square(size=16, start=4, stop=12) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[start:stop, start:stop] = True
    return mask


def edge_distance(y: int, x: int, start=4, stop=12) -> int:
    """Distance of a pixel of the square to the nearest pixel outside it, along the axes (exact for a square)."""
    return min(y - start + 1, stop - y, x - start + 1, stop - x)


class HalfModel:
    """A stand-in model on a 16 px image: every prompt gets low-res logits marking the left half of the square
    (``left_half``) or the whole square, whatever the clicks."""

    def __init__(self, left_half: bool):
        self.left_half, self.pixel_mean, self.calls = left_half, torch.zeros(3, 1, 1), 0

    def preprocess(self, images):
        return images

    def encode(self, images):
        return torch.zeros(len(images), 1, 1, 1)

    def decode(self, embeddings, coords, labels, boxes=None, mask_input=None, multimask_output=True):
        self.calls += 1
        logits = torch.full((len(embeddings), 3, 4, 4), -10.0)
        logits[:, :, 1:3, 1:2 if self.left_half else 3] = 10.0  # low-res cells of 4 x 4 pixels
        return logits, torch.tensor([[0.1, 0.9, 0.2]]).repeat(len(embeddings), 1), None


def one_sample(copies: int) -> list[ShapesSample]:
    masks = np.repeat(square()[None], copies, 0)
    return [ShapesSample(np.zeros((16, 16, 3), np.uint8), masks, ["square"] * copies, [set()] * copies)]


def test_inside_distance_by_hand():
    distance = inside_distances(square()[None])[0]
    assert distance[4, 4] == 1 and distance[7, 7] == 4 and distance[5, 9] == 2 and distance[0, 0] == 0
    assert all(distance[y, x] == edge_distance(y, x) for y in range(4, 12) for x in range(4, 12))


def test_sampler_diagnostics_of_a_student_that_misses_the_right_half():
    rounds, copies = 4, 200
    model = HalfModel(left_half=True)
    result = sampler_diagnostics(model, one_sample(copies), rounds=rounds)
    assert model.calls == rounds and len(result["boundary_distance"]) == rounds + 1
    # the upsampled left-half prediction: the left half less its four rounded-off corners, 28 of 64 square pixels
    # (tests/sam/test_prompts_and_losses.py), so every corrected mask has IoU 28 / 64 and every later point lies in
    # the miss region, which is not empty
    assert result["in_miss_region"][0] is None and result["iou_before"][0] is None
    assert result["in_miss_region"][1:] == [1.0] * rounds
    assert result["iou_before"][1:] == pytest.approx([28 / 64] * rounds)
    # point 0 is uniform over the square: its mean distance is the square's (28 x 1 + 20 x 2 + 12 x 3 + 4 x 4) / 64;
    # later points are uniform over the miss region: the right half plus the four corners
    assert result["boundary_distance"][0] == pytest.approx(120 / 64, abs=0.15)
    miss = [(y, x) for y in range(4, 12) for x in range(8, 12)] + [(4, 4), (4, 7), (11, 4), (11, 7)]
    expected = np.mean([edge_distance(y, x) for y, x in miss])
    assert all(value == pytest.approx(expected, abs=0.15) for value in result["boundary_distance"][1:])


def test_points_of_a_nearly_right_student_go_to_the_corners_it_rounds_off():
    # the upsampled whole-square prediction misses only the square's four corner pixels (60 of 64): every later
    # point is one of them, on the boundary
    result = sampler_diagnostics(HalfModel(left_half=False), one_sample(10), rounds=2)
    assert result["in_miss_region"][1:] == [1.0, 1.0] and result["boundary_distance"][1:] == [1.0, 1.0]
    assert result["iou_before"][1:] == pytest.approx([60 / 64] * 2)


def test_hard_mask_weights_by_hand():
    # the teacher finds the whole square but its rounded-off corners (60 of 64 pixels), the student the left half
    # but its corners (28 of 64): H = sigmoid((60 / 64) / (28 / 64) - 1) for each of the 3 masks
    weights = hard_mask_weights(HalfModel(left_half=False), HalfModel(left_half=True), one_sample(2))
    expected = 1 / (1 + math.exp(-(60 / 28 - 1)))
    assert weights.shape == (2, 3) and weights == pytest.approx(np.full((2, 3), expected), rel=1e-5)
