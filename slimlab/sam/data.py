"""Training data for distillation: the built-in ShapesSA set or a folder of images with optional masks.

Masks may come from a COCO instances JSON (polygons or RLE, compressed or not) or SA-1B style per-image JSON
files (``<image stem>.json`` with ``annotations[].segmentation`` as compressed RLE). Images without masks are
still usable: distillation then takes the teacher's mask as the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from slimlab.core.errors import SlimlabError
from slimlab.sam.mask_utils import rle_to_mask
from slimlab.sam.shapes import ShapesSample
from slimlab.sam.transforms import check_resizable, load_image, longest_side_shape

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def rle_counts_from_string(text: str, where: str = "RLE") -> list[int]:
    """Decode COCO's compressed RLE string (5-bit groups, sign bit, deltas from the run two before)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):  # the last group still announced a continuation
                raise SlimlabError(f"{where}: compressed RLE string ends in the middle of a run length "
                                   f"(truncated after {len(text)} characters?)")
            c = ord(text[position]) - 48
            if not 0 <= c < 64:
                raise SlimlabError(f"{where}: character {text[position]!r} at position {position} is not part of "
                                   "COCO's compressed RLE alphabet ('0' to 'o')")
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            position += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


MIN_MASK_PIXELS = 16  # at the model's input size; a smaller mask has no stable centre point or box to prompt
MAX_POLYGON_COORDINATE = 1e6  # pixels; a polygon may stray a little outside its image, never this far


def polygon_points(polygon, where: str) -> np.ndarray:
    """A COCO polygon [x0, y0, x1, y1, ...] -> (N, 2) int32 pixel corners; at least 3 points, all finite."""
    if not isinstance(polygon, (list, tuple)) or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon):
        raise SlimlabError(f"{where}: each polygon must be a flat list of x, y numbers")
    if len(polygon) < 6 or len(polygon) % 2:
        raise SlimlabError(f"{where}: polygon has {len(polygon)} numbers; it needs an even count of at least 6 "
                           "(x, y of 3 or more points)")
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise SlimlabError(f"{where}: polygon has a non-finite coordinate")
    if np.abs(points).max() > MAX_POLYGON_COORDINATE:  # would overflow int32 and draw garbage
        raise SlimlabError(f"{where}: polygon coordinate {np.abs(points).max():g} lies far outside any image")
    return points.round().astype(np.int32)


def segmentation_to_mask(segmentation, height: int, width: int, where: str) -> np.ndarray:
    """Polygons or RLE (compressed or not) -> (height, width) bool; a malformed annotation raises naming
    ``where`` (file, annotation index and image)."""
    if isinstance(segmentation, list):  # COCO polygons
        canvas = np.zeros((height, width), np.uint8)
        for polygon in segmentation:
            cv2.fillPoly(canvas, [polygon_points(polygon, where)], 1)
        return canvas.astype(bool)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        counts = segmentation["counts"]
        if isinstance(counts, str):
            counts = rle_counts_from_string(counts, where)
        mask = rle_to_mask({"size": segmentation.get("size"), "counts": counts}, where)
        if mask.shape != (height, width):
            raise SlimlabError(f"{where}: RLE size {mask.shape} differs from the image size {(height, width)}")
        return mask
    raise SlimlabError(f"{where}: segmentation is neither a polygon list nor an RLE dict")


def fit_to_square(image: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize the longest side to ``size`` and zero-pad right/bottom, like the model input."""
    new_h, new_w = longest_side_shape(*image.shape[:2], size)
    out = np.zeros((size, size, 3), np.uint8)
    out[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    out_masks = np.zeros((len(masks), size, size), bool)
    for index, mask in enumerate(masks):
        out_masks[index, :new_h, :new_w] = cv2.resize(mask.astype(np.uint8), (new_w, new_h),
                                                      interpolation=cv2.INTER_NEAREST).astype(bool)
    return out, out_masks


def read_coco_segmentations(path: Path) -> dict[str, list[tuple[object, str]]]:
    """image file name -> [(segmentation, "file: annotation k (image name)")] of a COCO instances file."""
    try:
        coco = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SlimlabError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or \
            not isinstance(coco.get("annotations"), list):
        raise SlimlabError(f"{path}: not a COCO instances file (needs 'images' and 'annotations' lists)")
    names: dict[object, str] = {}
    for index, image in enumerate(coco["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise SlimlabError(f"{path}: images[{index}] needs an 'id' and a 'file_name'")
        if image["id"] in names:
            raise SlimlabError(f"{path}: images[{index}]: image id {image['id']!r} appears twice")
        names[image["id"]] = Path(image["file_name"]).name
    segmentations: dict[str, list[tuple[object, str]]] = {}
    for index, annotation in enumerate(coco["annotations"]):
        if not isinstance(annotation, dict) or "segmentation" not in annotation:
            raise SlimlabError(f"{path}: annotation {index} has no 'segmentation'")
        if annotation.get("image_id") not in names:
            raise SlimlabError(f"{path}: annotation {index}: image_id {annotation.get('image_id')!r} is not the id "
                               "of any entry of 'images'")
        name = names[annotation["image_id"]]
        segmentations.setdefault(name, []).append((annotation["segmentation"], f"{path}: annotation {index} "
                                                                               f"(image {name})"))
    return segmentations


class FolderDataset:
    """Images of a folder, with masks from ``annotations`` (COCO JSON) or per-image SA-1B JSON when present."""

    def __init__(self, folder: str | Path, size: int, annotations: str | Path | None = None) -> None:
        self.folder, self.size = Path(folder), size
        if not self.folder.is_dir():
            raise SlimlabError(f"{folder}: is a file; give the folder of images" if self.folder.exists() else
                               f"{folder}: image folder not found")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SlimlabError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        # image file name -> [(segmentation, "file: annotation k (image name)")], the label names the source
        self.coco: dict[str, list[tuple[object, str]]] = {}
        # image index -> annotated masks under MIN_MASK_PIXELS after the resize, left out of every sample
        self.skipped_small_masks: dict[int, int] = {}
        if annotations:
            self.coco = read_coco_segmentations(Path(annotations))
            on_disk = {path.name for path in self.paths}
            if self.coco and not on_disk & set(self.coco):
                raise SlimlabError(f"{annotations}: none of the {len(self.coco)} images it annotates is in {folder} "
                                   f"(e.g. {next(iter(self.coco))})")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ShapesSample:
        path = self.paths[index]
        image = load_image(path)
        height, width = image.shape[:2]
        check_resizable(height, width, self.size, str(path))
        segmentations = self.coco.get(path.name)
        sa1b = path.with_suffix(".json")
        if segmentations is None and sa1b.is_file():
            try:
                segmentations = [(a["segmentation"], f"{sa1b}: annotation {i} (image {path.name})")
                                 for i, a in enumerate(json.loads(sa1b.read_text())["annotations"])]
            except (ValueError, KeyError, TypeError) as error:
                raise SlimlabError(f"{sa1b}: not an SA-1B annotation file ({error})") from error
        masks = np.array([segmentation_to_mask(s, height, width, where) for s, where in segmentations or []],
                         dtype=bool).reshape(-1, height, width)
        image, masks = fit_to_square(image, masks, self.size)
        kept = masks.sum(axis=(1, 2)) >= MIN_MASK_PIXELS  # (K,)
        self.skipped_small_masks[index] = int((~kept).sum())
        masks = masks[kept]
        return ShapesSample(image, masks, ["unknown"] * len(masks), [set() for _ in masks])
