"""Datasets for training: the synthetic set held in memory, or real images read from annotation files.

Both yield (image uint8 (3, H, W), labels float (A,)); ``to_model_input`` normalises a batch on the device, so the
loaders stay cheap and the same code path serves CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from slimlab.core.errors import SlimlabError
from slimlab.par.annotations import load_annotations
from slimlab.par.config import ParTrainConfig
from slimlab.par.synthetic import make_synthetic_pedestrians

# Keywords that place an attribute in a body region (0 head, 1 upper, 2 lower, 3 whole) when no map is given.
REGION_KEYWORDS = ((0, ("hair", "hat", "head", "glasses", "muffler", "face", "bald", "earring")),
                   (1, ("upper", "shirt", "sleeve", "coat", "jacket", "backpack", "shoulder", "vest", "sweater",
                        "scarf", "logo", "tshirt", "suit", "cotton")),
                   (2, ("lower", "trousers", "shorts", "skirt", "dress", "jeans", "foot", "shoe", "boot", "sandal",
                        "sneaker", "handbag", "leg")))


@dataclass
class AttributeData:
    train: Dataset
    test: Dataset
    attribute_names: tuple[str, ...]
    attribute_to_branch: tuple[int, ...]
    train_labels: np.ndarray                # (N, A) for the co-occurrence prior and the loss weights
    weak_attributes: tuple[int, ...] = ()
    oracle_labels: np.ndarray | None = None


class ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, 3, H, W) uint8
        self.labels = torch.from_numpy(labels.astype(np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class ImageFileDataset(Dataset):
    """Images on disk resized to (height, width); an unreadable image is an error naming the file."""

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, height: int, width: int):
        self.paths, self.labels = list(paths), torch.from_numpy(labels.astype(np.float32))
        self.height, self.width = height, width

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return read_image(self.paths[index], self.height, self.width), self.labels[index]


def read_image(path: str | Path, height: int, width: int) -> torch.Tensor:
    """(3, height, width) uint8 RGB tensor from an image file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not Path(path).exists() else "not a readable image"
        raise SlimlabError(f"{path}: {reason}")
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)[:, :, ::-1]  # BGR -> RGB
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, roughly zero-mean unit-variance."""
    return (images.float() / 255.0 - 0.5) / 0.25


def default_attribute_to_branch(names: Sequence[str]) -> tuple[int, ...]:
    """Body region of each attribute from keywords in its name; anything else (gender, age, ...) -> whole body."""
    branches = []
    for name in names:
        lowered = name.lower()
        branches.append(next((b for b, words in REGION_KEYWORDS if any(w in lowered for w in words)), 3))
    return tuple(branches)


def load_attribute_data(cfg: ParTrainConfig) -> AttributeData:
    if cfg.dataset == "synthetic":
        data = make_synthetic_pedestrians(cfg.train_count, cfg.test_count, cfg.variant,
                                          identity_disjoint=cfg.identity_disjoint, seed=cfg.data_seed)
        return AttributeData(ArrayDataset(data.train_images, data.train_labels),
                             ArrayDataset(data.test_images, data.test_labels), data.attribute_names,
                             _branch_map(cfg, data.attribute_names, data.attribute_to_branch), data.train_labels,
                             data.weak_attributes, data.oracle_labels)
    annotations = load_annotations(cfg.dataset, cfg.data_root, cfg.partition, cfg.images_root)
    labels = annotations.labels
    subset = lambda rows: ImageFileDataset([annotations.image_paths[i] for i in rows], labels[rows],  # noqa: E731
                                           cfg.image_height, cfg.image_width)
    return AttributeData(subset(annotations.train_indices), subset(annotations.test_indices),
                         annotations.attribute_names,
                         _branch_map(cfg, annotations.attribute_names, default_attribute_to_branch(annotations.attribute_names)),
                         labels[annotations.train_indices])


def image_folders(data: AttributeData) -> set[Path]:
    """The folders the splits' image files sit in (an output may not go there: it is the dataset)."""
    return {Path(path).parent for split in (data.train, data.test) for path in getattr(split, "paths", ())}


def check_splits(data: AttributeData, cfg: ParTrainConfig, splits: Sequence[str] = ("train", "test")) -> None:
    """Before any training: each split has examples and every image file of it exists and has a readable header
    (a bad test image would otherwise fail only after the last epoch, an empty test split in ``torch.cat``)."""
    source = cfg.data_root or cfg.dataset
    for split in splits:
        dataset = getattr(data, split)
        if len(dataset) == 0:
            which = f" of partition {cfg.partition}" if cfg.partition else ""
            raise SlimlabError(f"{source}: the {split} split{which} is empty (no images)")
        for path in getattr(dataset, "paths", ()):  # image-file datasets; the synthetic set is in memory
            if not Path(path).is_file():
                raise SlimlabError(f"{path}: image of the {split} split not found (set images_root= if the images "
                                   f"are not next to {source})")
            if not _has_image_header(path):
                raise SlimlabError(f"{path}: not a readable image (in the {split} split)")


def _has_image_header(path: Path) -> bool:
    """A cheap check: PIL parses only the header. A file of no format PIL knows is decoded by OpenCV, the reader
    training uses, so formats only OpenCV reads still pass; a file cut short after its header is caught when read."""
    try:
        with Image.open(path):
            return True
    except UnidentifiedImageError:
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None
    except (OSError, SyntaxError, ValueError):  # a known format with a broken header
        return False


def _branch_map(cfg: ParTrainConfig, names: Sequence[str], default: tuple[int, ...]) -> tuple[int, ...]:
    if not cfg.attribute_to_branch:
        return default
    if len(cfg.attribute_to_branch) != len(names):
        raise SlimlabError(f"config 'attribute_to_branch' has {len(cfg.attribute_to_branch)} entries but the dataset "
                           f"has {len(names)} attributes")
    return tuple(cfg.attribute_to_branch)
