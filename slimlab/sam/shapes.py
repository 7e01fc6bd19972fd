"""ShapesSA: a procedural segment-anything set with exact instance masks (numpy + OpenCV, seeded).

Each image has 3-12 instances (disks, ellipses, rectangles, polygons, stars, thin bars, rings) drawn in z-order
over a textured background (crops of skimage's brick / grass / gravel), so later shapes occlude earlier ones.
The ground truth is each instance's *visible* region; tags mark thin, concave, occluded and small instances.

With ``annotate_background`` the same instances (same seed, same shapes and colours) lie on a background of 2-4
textured regions (a Voronoi partition, each region its own texture and tint), and the visible part of each region
is a mask too (kind "background", tag "stuff"): every pixel then belongs to exactly one mask (but for the rare
instance fragments under MIN_VISIBLE_PIXELS), as SA-1B annotates "everything", background regions included.
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
    masks: np.ndarray  # (K, H, W) bool, visible region of each instance (then of each background region)
    kinds: list[str]
    tags: list[set[str]]  # subset of {"thin", "concave", "occluded", "small"}, or {"stuff"} for a background region


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


def background_regions(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size, 3) float background of 2-4 Voronoi regions, each its own texture crop and tint, and the
    (R, size, size) bool partition of the image into those regions."""
    count = int(rng.integers(2, 5))
    sites = rng.uniform(0, size, size=(count, 2))
    ys, xs = np.mgrid[0:size, 0:size]
    distance = (xs[None] - sites[:, 0, None, None]) ** 2 + (ys[None] - sites[:, 1, None, None]) ** 2
    label = distance.argmin(axis=0)  # (size, size) index of the nearest site
    image = np.zeros((size, size, 3), np.float32)
    tints: list[np.ndarray] = []
    for region in range(count):
        patch = background(rng, size)
        tint = patch.mean(axis=(0, 1))
        # regions must be told apart by colour: shift a tint too close to an earlier one (L2 < 60 in RGB)
        for _ in range(20):
            if all(np.linalg.norm(tint - other) >= 60 for other in tints):
                break
            shift = rng.uniform(-90, 90, size=3)
            patch, tint = np.clip(patch + shift, 0, 255), np.clip(tint + shift, 0, 255)
        tints.append(tint)
        image = np.where((label == region)[:, :, None], patch, image)
    return image, np.stack([label == region for region in range(count)])


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


def make_sample(seed: int, size: int = 128, annotate_background: bool = False) -> ShapesSample:
    rng = np.random.default_rng(seed)
    image = background(rng, size)
    regions = np.zeros((0, size, size), bool)
    if annotate_background:  # its own random stream: ``rng`` drew the plain background, so the instances match
        image, regions = background_regions(np.random.default_rng([seed, 1]), size)
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
    covered_by_shapes = np.any(full, axis=0) if full else np.zeros((size, size), bool)
    for region in regions:
        visible_region = region & ~covered_by_shapes
        if visible_region.sum() >= MIN_VISIBLE_PIXELS:
            masks.append(visible_region)
            kept_kinds.append("background")
            tags.append({"stuff"})
    noise = rng.normal(0, 4, size=image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return ShapesSample(image, np.array(masks, dtype=bool).reshape(-1, size, size), kept_kinds, tags)


class ShapesDataset:
    """``count`` samples with seeds ``base_seed + i``; train and test sets use disjoint seed ranges.
    ``annotate_background``: background regions are masks too (see the module doc)."""

    def __init__(self, count: int, split: str = "train", size: int = 128, annotate_background: bool = False) -> None:
        self.count, self.size, self.annotate_background = count, size, annotate_background
        self.base_seed = {"train": 0, "test": 10_000_000, "calib": 20_000_000}[split]
        self.cache: dict[int, ShapesSample] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> ShapesSample:
        if index not in self.cache:
            self.cache[index] = make_sample(self.base_seed + index, self.size, self.annotate_background)
        return self.cache[index]
