"""Image files <-> tensors: listing, checked reading, atomic writing and resizing.

Images travel through slimlab as float tensors in [-1, 1] (the tanh range image generators produce), shape
(3, H, W) for one image or (B, 3, H, W) for a batch. Every reader names the file it could not use.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder``; an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlimlabError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SlimlabError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height), after checking the whole file decodes (the check before training).

    ``verify()`` alone reads only the structure (PNG chunk CRCs) and passes a JPEG cut in half, so the pixels are
    decoded too, in a fresh handle (a verified image cannot be loaded); JPEGs decode at 1/8 scale, which still
    reads every byte of the entropy-coded data but is several times cheaper.
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            size = image.size
            image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))  # a no-op for non-JPEG files
            image.load()
            return size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise SlimlabError(f"{path}: not a readable image ({error})") from error


def read_image(path: str | Path) -> np.ndarray:
    """Decode to uint8 RGB (H, W, 3); grey and RGBA images are converted (alpha composited on white).

    A grey image of more than 8 bits (16-bit PNG / TIFF: PIL modes I;16, I) keeps the top 8 of the bits it uses:
    PIL's RGB conversion would clip its values at 255 and turn it almost white, and keeping the top 8 of all 16
    bits would turn 12-bit camera data, or 8-bit values stored in 16 bits, nearly black."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I"):
                values = np.clip(np.asarray(image, dtype=np.int64), 0, None)
                grey = (values >> max(0, int(values.max()).bit_length() - 8)).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise SlimlabError(f"{path}: not a readable image ({error})") from error


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    return torch.from_numpy(array).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [-1, 1] -> uint8 (H, W, 3), clamped and rounded."""
    scaled = image.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round()
    return scaled.to(torch.uint8).permute(1, 2, 0).numpy()


def load_image_tensor(path: str | Path) -> torch.Tensor:
    return to_tensor(read_image(path))


def encode_png(image: torch.Tensor | np.ndarray) -> bytes:
    array = to_uint8(image) if isinstance(image, torch.Tensor) else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(path: str | Path, image: torch.Tensor | np.ndarray) -> None:
    """Write a [-1, 1] tensor or a uint8 array as PNG, atomically."""
    atomic_write_bytes(path, encode_png(image))


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (B, C, H, W) or (C, H, W) to ``size`` (int = square)."""
    height, width = (size, size) if isinstance(size, int) else size
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    if batch.shape[-2:] == (height, width):
        return images
    out = F.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out if images.dim() == 4 else out[0]


def image_grid(rows: list[list[torch.Tensor]], padding: int = 2) -> np.ndarray:
    """Tile equal-size (3, H, W) [-1, 1] images into one uint8 (H', W', 3) grid, white between cells."""
    height, width = rows[0][0].shape[-2:]
    columns = max(len(row) for row in rows)
    grid = np.full((len(rows) * (height + padding) + padding, columns * (width + padding) + padding, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top:top + height, left:left + width] = to_uint8(resize(image, (height, width)))
    return grid
