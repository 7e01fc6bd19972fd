"""Built-in offline image-translation tasks, generated deterministically from images shipped in scikit-image
and scikit-learn, written once as PNG folders into a cache and reused.

Layouts (the same ones user data uses):
- paired task:   <root>/train/A, <root>/train/B, <root>/test/A, <root>/test/B (same file names pair up)
- unpaired task: <root>/trainA, <root>/trainB (unaligned), <root>/testA and <root>/testB, where testB holds
  the hidden aligned target of each testA image (used only for evaluation).

Tasks: ``edges2photo`` (Canny edge map -> photo crop), ``sr4`` (4x bicubic-degraded crop -> crop), both split
by source image so test crops come from images never seen in training; ``labels2texture`` (a mini Cityscapes:
colour-coded Voronoi label map of ``LABEL_CLASSES`` -> each region rendered with its class's texture, so a
segmenter trained on real renderings scores generated ones); and ``shapes2stripes`` (unpaired: flat-coloured
shapes -> the same shapes filled with zebra-like stripes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory, atomic_write_text

TASK_VERSION = 1
TASK_NAMES = ("edges2photo", "sr4", "labels2texture", "shapes2stripes")
# split by source: the four test sources never appear in training
TRAIN_SOURCES = ("astronaut", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel",
                 "motorcycle_left", "motorcycle_right", "china", "coins", "brick", "grass", "moon")
TEST_SOURCES = ("coffee", "flower", "camera", "gravel")
# labels2texture: class name -> (label colour in the A image, bundled grey texture, RGB tint of its rendering)
LABEL_CLASSES = {"road": ((128, 64, 128), "gravel", (0.85, 0.8, 0.85)),
                 "vegetation": ((107, 142, 35), "grass", (0.45, 0.9, 0.3)),
                 "building": ((70, 70, 70), "brick", (1.0, 0.55, 0.4)),
                 "terrain": ((152, 251, 152), "moon", (0.55, 0.65, 1.0)),
                 "sign": ((220, 220, 0), "coins", (1.0, 0.9, 0.35))}
LABEL_PALETTE = np.array([colour for colour, _, _ in LABEL_CLASSES.values()], np.int64)  # (classes, 3)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SLIMLAB_CACHE", Path.home() / ".cache" / "slimlab")) / "image_tasks"


def builtin_task(name: str, cache_dir: str | Path | None = None, size: int = 64, train_per_source: int = 24,
                 test_per_source: int = 16) -> Path:
    """Folder of built-in task ``name``, generating it on first use (atomically, so a crash leaves nothing)."""
    if name not in TASK_NAMES:
        raise SlimlabError(f"unknown built-in task '{name}'; known: {', '.join(TASK_NAMES)}")
    settings = {"task": name, "version": TASK_VERSION, "size": size, "train_per_source": train_per_source,
                "test_per_source": test_per_source}
    tag = f"{name}-{size}px-v{TASK_VERSION}-{train_per_source}x{test_per_source}"
    root = Path(cache_dir or default_cache_dir()) / tag
    manifest = root / "task.json"
    if manifest.exists() and json.loads(manifest.read_text()) == settings:
        return root
    with atomic_directory(root, overwrite=True) as temporary:
        if name == "shapes2stripes":
            _write_unpaired_shapes(temporary, size, train_per_source * len(TRAIN_SOURCES),
                                   test_per_source * len(TEST_SOURCES))
        elif name == "labels2texture":
            _write_label_scenes(temporary, size, train_per_source * len(TRAIN_SOURCES),
                                test_per_source * len(TEST_SOURCES))
        else:
            _write_paired_crops(temporary, name, size, train_per_source, test_per_source)
        atomic_write_text(temporary / "task.json", json.dumps(settings))
    return root


def source_image(name: str) -> np.ndarray:
    """A bundled image as uint8 RGB (H, W, 3)."""
    from skimage import data
    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        image = left if name.endswith("left") else right
    elif name in ("china", "flower"):
        from sklearn.datasets import load_sample_image
        image = load_sample_image(f"{name}.jpg")
    else:
        image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    return np.ascontiguousarray(image[..., :3])


def random_crops(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Crops of ``size`` after resizing the image so its short side is 2 * size (keeps scene structure)."""
    from skimage.transform import resize
    scale = 2 * size / min(image.shape[:2])
    shape = (max(size, round(image.shape[0] * scale)), max(size, round(image.shape[1] * scale)))
    small = (resize(image, shape, anti_aliasing=True) * 255).round().astype(np.uint8)
    crops = []
    for _ in range(count):
        top = rng.integers(0, small.shape[0] - size + 1)
        left = rng.integers(0, small.shape[1] - size + 1)
        crops.append(small[top:top + size, left:left + size].copy())
    return crops


def edge_map(photo: np.ndarray) -> np.ndarray:
    """Black Canny edges on white, as RGB (the edges2shoes look)."""
    from skimage.color import rgb2gray
    from skimage.feature import canny
    edges = canny(rgb2gray(photo), sigma=1.5)
    return np.stack([np.where(edges, 0, 255).astype(np.uint8)] * 3, -1)


def degrade(photo: np.ndarray, factor: int = 4) -> np.ndarray:
    """Bicubic down by ``factor`` and back up: a same-size low-resolution input."""
    from skimage.transform import resize
    size = photo.shape[:2]
    low = resize(photo, (size[0] // factor, size[1] // factor), order=3, anti_aliasing=True)
    return (resize(low, size, order=3).clip(0, 1) * 255).round().astype(np.uint8)


def _write_paired_crops(root: Path, name: str, size: int, train_per_source: int, test_per_source: int) -> None:
    from skimage.io import imsave
    rng = np.random.default_rng(2020)
    for split, sources, count in (("train", TRAIN_SOURCES, train_per_source), ("test", TEST_SOURCES, test_per_source)):
        (root / split / "A").mkdir(parents=True)
        (root / split / "B").mkdir(parents=True)
        for source in sources:
            for index, photo in enumerate(random_crops(source_image(source), count, size, rng)):
                inputs = edge_map(photo) if name == "edges2photo" else degrade(photo)
                imsave(root / split / "A" / f"{source}_{index:03d}.png", inputs, check_contrast=False)
                imsave(root / split / "B" / f"{source}_{index:03d}.png", photo, check_contrast=False)


def shapes_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene of 1-3 shapes: (flat-coloured version, striped version) on the same light background."""
    from skimage.draw import disk, polygon, rectangle
    background = rng.integers(170, 235, 3)
    flat = np.empty((size, size, 3), np.uint8)
    flat[:] = background
    striped = flat.copy()
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(0, 3)
        cy, cx = rng.integers(size // 6, size - size // 6, 2)
        r = rng.integers(size // 8, size // 4)
        if kind == 0:
            rows, cols = disk((cy, cx), r, shape=flat.shape[:2])
        elif kind == 1:
            rows, cols = rectangle((cy - r, cx - r), extent=(2 * r, int(1.5 * r)), shape=flat.shape[:2])
        else:
            rows, cols = polygon([cy - r, cy + r, cy + r], [cx, cx - r, cx + r], shape=flat.shape[:2])
        rows, cols = np.asarray(rows).ravel(), np.asarray(cols).ravel()
        colour = rng.integers(20, 200, 3)
        angle, period = rng.uniform(0, np.pi), rng.uniform(5, 9)
        stripes = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0)[rows, cols]
        flat[rows, cols] = colour
        striped[rows, cols] = np.where(stripes[:, None], colour // 4, 255 - colour // 4)
    return flat, striped


def _write_unpaired_shapes(root: Path, size: int, train_count: int, test_count: int) -> None:
    from skimage.io import imsave
    rng = np.random.default_rng(2021)
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True)
    for index in range(train_count):  # A and B drawn from different scenes: the training data is unpaired
        imsave(root / "trainA" / f"{index:04d}.png", shapes_pair(rng, size)[0], check_contrast=False)
        imsave(root / "trainB" / f"{index:04d}.png", shapes_pair(rng, size)[1], check_contrast=False)
    for index in range(test_count):
        flat, striped = shapes_pair(rng, size)
        imsave(root / "testA" / f"{index:04d}.png", flat, check_contrast=False)
        imsave(root / "testB" / f"{index:04d}.png", striped, check_contrast=False)


def voronoi_labels(rng: np.random.Generator, size: int, classes: int) -> np.ndarray:
    """(size, size) int64 class map: 3-8 random Voronoi cells, each given a random class."""
    sites = rng.uniform(0, size, (int(rng.integers(3, 9)), 2))           # (cells, 2) as (y, x)
    cell_class = rng.integers(0, classes, len(sites))
    yy, xx = np.mgrid[:size, :size]
    distance = (yy[..., None] - sites[:, 0]) ** 2 + (xx[..., None] - sites[:, 1]) ** 2  # (size, size, cells)
    return cell_class[distance.argmin(-1)]


def label_textures(scale: int) -> list[np.ndarray]:
    """One tinted RGB float texture (H, W, 3) in [0, 255] per class, short side ``scale`` px."""
    from skimage import data
    from skimage.transform import resize
    textures = []
    for _, name, tint in LABEL_CLASSES.values():
        grey = getattr(data, name)().astype(np.float64)
        factor = scale / min(grey.shape[:2])
        grey = resize(grey, (round(grey.shape[0] * factor), round(grey.shape[1] * factor)), anti_aliasing=True)
        grey = (grey - grey.min()) / max(grey.max() - grey.min(), 1e-9)  # [0, 1]: every class uses the full range
        textures.append((0.15 + 0.85 * grey)[..., None] * np.asarray(tint) * 255)
    return textures


def render_labels(labels: np.ndarray, textures: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3): each class's pixels filled from a random crop of its texture."""
    size = labels.shape[0]
    image = np.zeros((*labels.shape, 3))
    for index, texture in enumerate(textures):
        top = rng.integers(0, texture.shape[0] - size + 1)
        left = rng.integers(0, texture.shape[1] - size + 1)
        crop = texture[top:top + size, left:left + size]
        image[labels == index] = crop[labels == index]
    return image.round().clip(0, 255).astype(np.uint8)


def labels_from_colours(image: np.ndarray) -> np.ndarray:
    """Class map (H, W) of a colour-coded label image (H, W, 3): the nearest ``LABEL_PALETTE`` colour per pixel."""
    distance = ((image[..., None, :].astype(np.int64) - LABEL_PALETTE) ** 2).sum(-1)  # (H, W, classes)
    return distance.argmin(-1)


def _write_label_scenes(root: Path, size: int, train_count: int, test_count: int) -> None:
    from skimage.io import imsave
    rng = np.random.default_rng(2022)
    textures = label_textures(2 * size)
    for split, count in (("train", train_count), ("test", test_count)):
        (root / split / "A").mkdir(parents=True)
        (root / split / "B").mkdir(parents=True)
        for index in range(count):
            labels = voronoi_labels(rng, size, len(LABEL_CLASSES))
            imsave(root / split / "A" / f"scene_{index:04d}.png", LABEL_PALETTE[labels].astype(np.uint8),
                   check_contrast=False)
            imsave(root / split / "B" / f"scene_{index:04d}.png", render_labels(labels, textures, rng),
                   check_contrast=False)
