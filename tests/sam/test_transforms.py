import numpy as np
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.predictor import SamPredictor
from slimlab.sam.transforms import (
    as_rgb_uint8,
    load_image,
    longest_side_shape,
    resize_image,
    scale_boxes,
    scale_coords,
)


def test_longest_side_shape_rounds_half_up():
    assert longest_side_shape(480, 640, 1024) == (768, 1024)  # 480 * 1.6 = 768 exactly
    assert longest_side_shape(100, 300, 1024) == (341, 1024)  # 341.33 -> 341
    assert longest_side_shape(3, 2, 128) == (128, 85)  # 85.33 -> 85
    assert longest_side_shape(1, 8, 1024) == (128, 1024)


def test_coordinates_follow_the_resize():
    # 640 x 480 -> 1024 x 768: x and y both scale by 1.6
    assert np.allclose(scale_coords(np.array([[10.0, 20.0]]), (480, 640), 1024), [[16.0, 32.0]])
    assert np.allclose(scale_boxes(np.array([1.0, 2.0, 3.0, 4.0]), (480, 640), 1024), [1.6, 3.2, 4.8, 6.4])
    # 100 x 300 (h x w) -> 341 x 1024: y scales by 3.41, not 1024/300
    assert np.allclose(scale_coords(np.array([[0.0, 100.0]]), (100, 300), 1024), [[0.0, 341.0]])


def test_normalise_and_pad():
    model = build_model("shapes_student")
    image = torch.full((1, 3, 64, 128), 255.0)
    out = model.preprocess(image)
    assert out.shape == (1, 3, 128, 128)
    assert torch.allclose(out[0, 0, 0, 0], torch.tensor((255 - 123.675) / 58.395))
    assert torch.all(out[:, :, 64:, :] == 0)  # bottom padding is zero after normalisation


def test_resize_keeps_constant_image_constant():
    resized = resize_image(np.full((30, 60, 3), 77, np.uint8), 128)
    assert resized.shape == (1, 3, 64, 128) and torch.all(resized == 77)


def test_postprocess_restores_original_size():
    model = build_model("shapes_student")
    low_res = torch.zeros(1, 1, 64, 64)
    low_res[..., :32, :] = 5.0  # top half of the padded input is foreground
    masks = model.postprocess_masks(low_res, (64, 128), (30, 60))  # valid input is the top half
    assert masks.shape == (1, 1, 30, 60)
    assert (masks > 0).all()  # unpadded region maps back to the whole image


@pytest.mark.parametrize("image", [np.zeros((20, 30), np.uint8), np.zeros((20, 30, 4), np.uint8),
                                   np.zeros((20, 30, 3), np.uint16) + 65535])
def test_gray_rgba_16bit_become_rgb8(image):
    out = as_rgb_uint8(image)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out.max() == image.max() >> (8 if image.dtype == np.uint16 else 0)


def test_bad_images_are_named(tmp_path):
    with pytest.raises(SlimlabError, match="at least 8 pixels"):
        as_rgb_uint8(np.zeros((4, 30, 3), np.uint8))
    with pytest.raises(SlimlabError, match="shape"):
        as_rgb_uint8(np.zeros((4, 30, 3, 2), np.uint8))
    corrupt = tmp_path / "x.png"
    corrupt.write_bytes(b"\x89PNG garbage")
    with pytest.raises(SlimlabError, match="x.png: not a readable image"):
        load_image(corrupt)


def test_sixteen_bit_png_loads(tmp_path):
    import cv2
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), np.full((12, 16), 40000, np.uint16))
    image = load_image(path)
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8 and image[0, 0, 0] == 40000 >> 8


def test_predictor_shapes_and_bad_prompts():
    predictor = SamPredictor(build_model("shapes_student"))
    predictor.set_image(np.zeros((40, 60, 3), np.uint8))
    masks, iou, low = predictor.predict(np.array([[5, 5], [10, 10]]), np.array([1, 0]))
    assert masks.shape == (3, 40, 60) and iou.shape == (3,) and low.shape == (3, 32, 32)
    masks, iou, low = predictor.predict(box=np.array([[0, 0, 10, 10], [5, 5, 20, 30]]), multimask_output=False)
    assert masks.shape == (2, 1, 40, 60)
    masks, _, _ = predictor.predict(np.array([[5, 5]]), np.array([1]), mask_input=low[:1], multimask_output=False)
    assert masks.shape == (1, 40, 60)  # token 0 only
    with pytest.raises(SlimlabError, match="outside"):
        predictor.predict(np.array([[60, 5]]), np.array([1]))
    with pytest.raises(SlimlabError, match="empty"):
        predictor.predict(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(SlimlabError, match="box prompt"):
        predictor.predict(box=np.array([10, 10, 5, 5]))
    with pytest.raises(SlimlabError, match="no prompt"):
        predictor.predict()
