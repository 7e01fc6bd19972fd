import numpy as np
import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.predictor import SamPredictor
from slimlab.sam.transforms import (
    apply_orientation,
    as_rgb_uint8,
    check_resizable,
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


def test_image_too_elongated_for_the_model_size_is_refused_by_name():
    # 3000 x 8 at 128: the short side becomes 8 * 128 / 3000 = 0.34 -> rounds to 0 pixels
    with pytest.raises(SlimlabError, match=r"photo.png: image is 3000x8 pixels.*at least 12 pixels"):
        check_resizable(8, 3000, 128, "photo.png")  # 3000 / (2 * 128) = 11.7 -> 12
    with pytest.raises(SlimlabError, match="image is 3000x8 pixels"):
        resize_image(np.zeros((8, 3000, 3), np.uint8), 128)
    check_resizable(12, 3000, 128)  # 12 * 128 / 3000 = 0.512 rounds up to 1 pixel: fine
    assert resize_image(np.zeros((12, 3000, 3), np.uint8), 128).shape == (1, 3, 1, 128)
    check_resizable(8, 3000, 1024)  # 8 * 1024 / 3000 = 2.7 -> 3 pixels at the full model size


def write_jpeg_with_orientation(path, pixels: np.ndarray, orientation: int) -> None:
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)


@pytest.mark.parametrize("channels", [3, 1])
def test_exif_orientation_6_jpeg_loads_upright(tmp_path, channels):
    # Stored 16 rows x 32 columns with a white top half; orientation 6 means "turn clockwise 90 degrees to view",
    # so the upright image is 32 x 16 and the stored top (white) becomes its right half.
    stored = np.zeros((16, 32), np.uint8)
    stored[:8] = 255
    path = tmp_path / "portrait.jpg"
    write_jpeg_with_orientation(path, stored if channels == 1 else np.repeat(stored[:, :, None], 3, 2), 6)
    image = load_image(path)
    assert image.shape == (32, 16, 3)
    assert image[:, 11:].min() > 200 and image[:, :5].max() < 55  # away from the JPEG-blurred middle columns


def test_every_exif_orientation_matches_pil_exif_transpose(tmp_path):
    from PIL import Image, ImageOps
    stored = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3)  # [[0 1 2], [3 4 5]]
    # by hand: 6 turns clockwise -> [[3 0], [4 1], [5 2]]; 8 counter-clockwise -> [[2 5], [1 4], [0 3]]
    assert apply_orientation(stored, 6).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert apply_orientation(stored, 8).tolist() == [[2, 5], [1, 4], [0, 3]]
    for orientation in range(1, 9):
        image = Image.fromarray(stored)
        image.getexif()[0x0112] = orientation
        assert np.array_equal(apply_orientation(stored, orientation), np.asarray(ImageOps.exif_transpose(image)))
