"""SAM pre/post-processing maths: resize the longest side, map prompt coordinates, image loading with checks.

Resizing is bilinear with antialiasing (``F.interpolate``), matching the PIL resize SAM applies before padding.
Files are read upright: the EXIF orientation a camera stores (instead of rotating the pixels) is applied.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slimlab.core.errors import SlimlabError

MIN_IMAGE_SIDE = 8
EXIF_ORIENTATION_TAG = 0x0112


def longest_side_shape(height: int, width: int, target: int) -> tuple[int, int]:
    """(h, w) scaled so the longest side equals ``target``, rounded half up (SAM's ``get_preprocess_shape``)."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def check_resizable(height: int, width: int, target: int, name: str = "image") -> None:
    """Refuse an image so elongated that resizing its longest side to ``target`` rounds the shorter side to
    0 pixels (e.g. 8 x 3000 at 128): interpolation would fail with a bare size error much later."""
    if min(longest_side_shape(height, width, target)) < 1:
        raise SlimlabError(f"{name}: image is {width}x{height} pixels; scaling its longest side to the model's "
                           f"{target} pixels leaves the shorter side under 1 pixel (it needs at least "
                           f"{math.ceil(max(height, width) / (2 * target))} pixels); crop it into less elongated "
                           "pieces")


def resize_image(image: np.ndarray, target: int, name: str = "image") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, h, w) float in 0-255 with the longest side = ``target``."""
    height, width = image.shape[:2]
    check_resizable(height, width, target, name)
    new_h, new_w = longest_side_shape(height, width, target)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    if (new_h, new_w) == (height, width):
        return tensor
    resized = F.interpolate(tensor, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    return resized.round().clamp(0, 255)  # the official path resizes a uint8 PIL image


def scale_coords(coords: np.ndarray | torch.Tensor, original_size: tuple[int, int], target: int):
    """Map (..., 2) x, y pixel coordinates from the original image into the resized model input."""
    new_h, new_w = longest_side_shape(*original_size, target)
    scale = np.array([new_w / original_size[1], new_h / original_size[0]], dtype=np.float32)
    if isinstance(coords, torch.Tensor):
        return coords.float() * torch.as_tensor(scale, device=coords.device)
    return np.asarray(coords, dtype=np.float32) * scale


def scale_boxes(boxes: np.ndarray | torch.Tensor, original_size: tuple[int, int], target: int):
    """(..., 4) x0, y0, x1, y1 boxes: both corners mapped like points."""
    shape = boxes.shape
    return scale_coords(boxes.reshape(*shape[:-1], 2, 2), original_size, target).reshape(shape)


def as_rgb_uint8(array: np.ndarray, name: str = "image") -> np.ndarray:
    """Accept grayscale, RGB, RGBA, 8- or 16-bit arrays; return (H, W, 3) uint8 RGB or raise naming the problem."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise SlimlabError(f"{name}: expected an HxW, HxWx3 or HxWx4 image, got shape {tuple(array.shape)}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:  # alpha is not part of SAM's input; composite nothing, just drop it
        array = array[:, :, :3]
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise SlimlabError(f"{name}: image is {array.shape[1]}x{array.shape[0]} pixels; "
                           f"at least {MIN_IMAGE_SIDE} pixels per side are needed")
    if array.dtype == np.uint16:
        # keep the top 8 of the bits the data uses: 12-bit camera data or 8-bit values stored in 16 bits would
        # turn (nearly) black if the top 8 of 16 bits were kept
        shift = max(0, int(array.max()).bit_length() - 8)
        array = (array >> shift).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise SlimlabError(f"{name}: image contains NaN or infinite values")
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        raise SlimlabError(f"{name}: unsupported pixel type {array.dtype} (use 8- or 16-bit integers or floats)")
    return np.ascontiguousarray(array)


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (1-8) of encoded image bytes; 1 (as stored) when there is none or PIL can't
    read the header (OpenCV decodes a few formats PIL does not)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # any header PIL rejects: the pixels are still read by OpenCV, just not reoriented
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (H, W[, C]) upright for an EXIF orientation, as PIL's ``ImageOps.exif_transpose``."""
    if orientation == 2:
        return array[:, ::-1]  # mirrored left-right
    if orientation == 3:
        return array[::-1, ::-1]  # upside down
    if orientation == 4:
        return array[::-1]  # mirrored top-bottom
    if orientation == 5:
        return array.swapaxes(0, 1)  # transposed
    if orientation == 6:
        return np.rot90(array, -1)  # stored 90 degrees counter-clockwise (portrait photo): turn clockwise
    if orientation == 7:
        return np.rot90(array, 2).swapaxes(0, 1)  # transverse
    if orientation == 8:
        return np.rot90(array, 1)  # stored 90 degrees clockwise: turn counter-clockwise
    return array


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file (any OpenCV format, 8/16-bit, gray/RGB/RGBA) as (H, W, 3) uint8 RGB, upright.

    IMREAD_UNCHANGED keeps 16-bit depth and alpha but also skips OpenCV's EXIF rotation, so the orientation
    tag is read with PIL and applied here."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SlimlabError(f"{path}: is a folder, not an image file" if path.is_dir() else f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise SlimlabError(f"{path}: not a readable image (corrupt or unsupported format)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[:, :, ::-1]  # OpenCV reads BGR
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, [2, 1, 0, 3]]
    image = apply_orientation(image, exif_orientation(data))
    return as_rgb_uint8(image, str(path))
