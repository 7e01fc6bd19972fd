"""ShapesSA: a procedural segment-anything set with exact instance masks (numpy + OpenCV, seeded).

Each image has 3-12 instances (disks, ellipses, rectangles, polygons, stars, thin bars, rings) drawn in z-order
over a textured background (crops of skimage's brick / grass / gravel), so later shapes occlude earlier ones.
The ground truth is each instance's *visible* region; tags mark thin, concave, occluded and small instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

KINDS = ("disk", "ellipse", "rectangle", "polygon", "star", "bar", "ring")
MIN_VISIBLE_PIXELS = 24


@dataclass
class ShapesSample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: np.ndarray  # (K, H, W) bool, visible region of each instance
    kinds: list[str]
    tags: list[set[str]]  # subset of {"thin", "concave", "occluded", "small"}


@lru_cache(maxsize=1)
def textures() -> list[np.ndarray]:
    from skimage import data
    return [data.brick(), data.grass(), data.gravel()]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    texture = textures()[rng.integers(3)]
    scale = rng.uniform(0.5, 1.5)
    crop = int(min(texture.shape[0] - 1, size / scale))
    y, x = rng.integers(0, texture.shape[0] - crop, size=2)
    patch = cv2.resize(texture[y:y + crop, x:x + crop], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch = (patch - patch.mean()) * rng.uniform(0.2, 0.6)  # low-contrast texture around a random tint
    tint = rng.uniform(40, 215, size=3)
    return np.clip(tint[None, None, :] + patch[:, :, None], 0, 255)


def draw_shape(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.1, 0.9, size=2) * size
    radius = rng.uniform(0.06, 0.22) * size
    center = (int(cx), int(cy))
    if kind == "disk":
        cv2.circle(canvas, center, int(radius), 1, -1)
    elif kind == "ellipse":
        axes = (int(radius), int(radius * rng.uniform(0.3, 0.8)))
        cv2.ellipse(canvas, center, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif kind == "rectangle":
        w, h = radius * rng.uniform(0.6, 1.4), radius * rng.uniform(0.6, 1.4)
        box = cv2.boxPoints(((cx, cy), (2 * w, 2 * h), rng.uniform(0, 90)))
        cv2.fillPoly(canvas, [box.astype(np.int32)], 1)
    elif kind in ("polygon", "star"):
        corners = rng.integers(5, 9) if kind == "polygon" else rng.integers(4, 7) * 2
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners)) if kind == "polygon" else \
            np.linspace(0, 2 * np.pi, corners, endpoint=False) + rng.uniform(0, np.pi)
        radii = radius * (rng.uniform(0.5, 1.0, corners) if kind == "polygon" else
                          np.where(np.arange(corners) % 2 == 0, 1.0, rng.uniform(0.35, 0.55)))
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(canvas, [points.astype(np.int32)], 1)
    elif kind == "bar":
        length, angle = radius * 2, rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        cv2.line(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1, int(rng.integers(2, 5)))
    else:  # ring
        cv2.circle(canvas, center, int(radius), 1, int(max(2, radius * rng.uniform(0.25, 0.45))))
    return canvas.astype(bool)


def make_sample(seed: int, size: int = 128) -> ShapesSample:
    rng = np.random.default_rng(seed)
    image = background(rng, size)
    full, colours, kinds = [], [], []
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for _ in range(rng.integers(3, 13)):
        kind = KINDS[rng.integers(len(KINDS))]
        mask = draw_shape(kind, rng, size)
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        colour = rng.uniform(0, 255, size=3)
        # a gentle linear shading so instances are not perfectly flat
        shade = (ys * rng.uniform(-30, 30) + xs * rng.uniform(-30, 30))[:, :, None]
        image = np.where(mask[:, :, None], np.clip(colour + shade, 0, 255), image)
        full.append(mask)
        colours.append(colour)
        kinds.append(kind)
    visible = []
    for index, mask in enumerate(full):
        occluders = np.any(full[index + 1:], axis=0) if index + 1 < len(full) else np.zeros_like(mask)
        visible.append(mask & ~occluders)
    masks, kept_kinds, tags = [], [], []
    for mask, whole, kind in zip(visible, full, kinds):
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        tag = set()
        if kind in ("bar", "ring"):
            tag.add("thin")
        if kind in ("star", "ring"):
            tag.add("concave")
        if mask.sum() < 0.8 * whole.sum():
            tag.add("occluded")
        if mask.sum() < 150:
            tag.add("small")
        masks.append(mask)
        kept_kinds.append(kind)
        tags.append(tag)
    noise = rng.normal(0, 4, size=image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return ShapesSample(image, np.array(masks, dtype=bool).reshape(-1, size, size), kept_kinds, tags)


class ShapesDataset:
    """``count`` samples with seeds ``base_seed + i``; train and test sets use disjoint seed ranges."""

    def __init__(self, count: int, split: str = "train", size: int = 128) -> None:
        self.count, self.size = count, size
        self.base_seed = {"train": 0, "test": 10_000_000, "calib": 20_000_000}[split]
        self.cache: dict[int, ShapesSample] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> ShapesSample:
        if index not in self.cache:
            self.cache[index] = make_sample(self.base_seed + index, self.size)
        return self.cache[index]
