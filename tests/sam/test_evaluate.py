import numpy as np
import pytest
import torch

from slimlab.sam.build import build_model
from slimlab.sam.evaluate import center_points, click_curve, click_predictions, prompted_ious
from slimlab.sam.shapes import ShapesDataset


def test_center_point_of_a_square_is_its_middle():
    # a 5 x 5 square at rows / cols 2..6: (4, 4) is 3 pixels from the outside on every side, every other pixel less
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 2:7, 2:7] = True
    assert center_points(mask).tolist() == [[4.0, 4.0]]


class ConstantDecoder:
    """Answers every prompt with the same low-res logits (3 masks, the second with the highest predicted IoU) and
    records the clicks it was given."""

    def __init__(self, value: float):
        self.value, self.calls = value, []

    def decode(self, embeddings, coords, labels, boxes, mask_prompt):
        self.calls.append((coords.clone(), labels.clone(), mask_prompt))
        logits = torch.full((len(coords), 3, 8, 8), -self.value)
        logits[:, 1] = self.value  # the chosen mask
        return logits, torch.tensor([[0.1, 0.9, 0.2]]).repeat(len(coords), 1), None


def square_gt() -> np.ndarray:
    gt = np.zeros((1, 16, 16), bool)
    gt[0, 3:8, 3:8] = True  # centre (5, 5)
    return gt


def test_a_missed_mask_gets_a_positive_click_at_the_centre_of_the_miss():
    decoder = ConstantDecoder(-5.0)  # predicts nothing: the miss is the whole GT
    predictions = click_predictions(decoder, torch.zeros(1), square_gt(), clicks=2)
    assert len(predictions) == 2 and not predictions[0].any()
    coords, labels, mask_prompt = decoder.calls[1]
    assert coords[0].tolist() == [[5.0, 5.0], [5.0, 5.0]] and labels[0].tolist() == [1.0, 1.0]
    assert mask_prompt.shape == (1, 1, 8, 8) and (mask_prompt < 0).all()  # the previous choice, as logits


def test_a_spilled_mask_gets_a_negative_click_outside_the_gt():
    decoder = ConstantDecoder(5.0)  # predicts the whole image: the error is everything outside the GT
    predictions = click_predictions(decoder, torch.zeros(1), square_gt(), clicks=2)
    assert predictions[0].all()
    coords, labels, _ = decoder.calls[1]
    x, y = coords[0, 1].long().tolist()
    assert not square_gt()[0, y, x] and labels[0].tolist() == [1.0, 0.0]
    # farthest from the error's edge: the largest error-free distance lies in the big L-shaped background
    assert min(x, y) >= 8


@pytest.mark.parametrize("clicks", [1, 3])
def test_click_curve_matches_separate_click_runs(clicks):
    torch.manual_seed(0)
    model = build_model("shapes_student").eval()
    dataset = ShapesDataset(2, "test")
    curve = click_curve(model, dataset, clicks=4)  # longer than either separate run: no entry is that run's end
    assert len(curve) == 4
    assert curve[clicks - 1] == pytest.approx(float(prompted_ious(model, dataset, "point", clicks)["iou"].mean()),
                                              abs=1e-6)


class WholeImageModel:
    """Every prompt (points or box) gets the whole image as its chosen mask, with predicted IoU 0.9."""

    pixel_mean = torch.zeros(3, 1, 1)

    def preprocess(self, images):
        return images

    def encode(self, images):
        return torch.zeros(len(images), 1, 1, 1)

    def decode(self, embeddings, coords, labels, boxes=None, mask_input=None, multimask_output=True):
        count = len(coords) if coords is not None else len(boxes)
        logits = torch.full((count, 3, 8, 8), -5.0)
        logits[:, 1] = 5.0
        return logits, torch.tensor([[0.1, 0.9, 0.2]]).repeat(count, 1), None


@pytest.mark.parametrize("prompt", ["point", "box"])
def test_iou_calibration_by_hand(prompt):
    from slimlab.sam.evaluate import iou_calibration
    from slimlab.sam.shapes import ShapesSample
    # two instances: the 5 x 5 square (actual IoU of the whole-image mask 25 / 256) and the whole image (IoU 1);
    # predicted 0.9 for both: errors 0.9 - 25 / 256 and -0.1
    masks = np.concatenate([square_gt(), np.ones((1, 16, 16), bool)])
    sample = ShapesSample(np.zeros((16, 16, 3), np.uint8), masks, ["square", "image"], [set(), set()])
    result = iou_calibration(WholeImageModel(), [sample], prompt)
    first = 0.9 - 25 / 256
    assert result["instances"] == 2
    assert result["abs_error"] == pytest.approx((first + 0.1) / 2, abs=1e-6)
    assert result["bias"] == pytest.approx((first - 0.1) / 2, abs=1e-6)
    assert result["predicted"] == pytest.approx(0.9, abs=1e-6)
    assert result["actual"] == pytest.approx((25 / 256 + 1) / 2, abs=1e-6)
