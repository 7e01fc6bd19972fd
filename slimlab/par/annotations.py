"""Annotation loaders for PETA, RAP (v1 / v2) and PA-100K in the layouts the common PAR toolboxes use.

* PA-100K: ``annotation.mat`` with ``{train,val,test}_images_name``, ``{train,val,test}_label``, ``attributes``;
  train = train + val (as the strong baseline trains), test = test. Images in ``data/`` (or ``release_data/``).
* RAP: ``RAP_annotation.mat`` holding struct ``RAP_annotation``; v2 fields ``name``, ``attribute``, ``data``,
  ``selected_attribute``, ``partition_attribute``; v1 fields ``imagesname``, ``attribute_eng``, ``data``/``label``,
  ``partion``. Label 2 (uncertain) counts as 0. v1 evaluates its first 51 attributes. Images in ``RAP_dataset/``.
* PETA: ``PETA.mat`` holding struct ``peta`` (``data`` with 4 id columns then 105 labels, ``attribute``,
  partitions with train / val / test indices; 35 evaluated attributes first; images ``images/00001.png``), or the
  original release folders ``<subset>/archive/Label.txt`` (``<id> attribute attribute ...`` per line).
* A toolbox ``dataset.pkl`` (Rethinking_of_PAR): ``image_name``, ``label``, ``attr_name``, ``partition``, ``root``
  and optionally ``label_idx.eval`` -- this also carries the zero-shot-identity (PETAzs / RAPzs) splits.
Labels must be 0 or 1 (RAP also 2, a pickle also -1, both counted as 0); anything else is an error.
MATLAB indices are 1-based and are converted. Every structural problem names the file and the field.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimlab.core.errors import SlimlabError
from slimlab.par.annotation_fields import (ToolboxUnpickler, as_list, as_text, check_labels, find_file, get_field,
                                          label_matrix, load_mat, pick_partition, whole_indices)

PETA_EVALUATED_ATTRIBUTES = (
    "accessoryHat", "accessoryMuffler", "accessoryNothing", "accessorySunglasses", "hairLong", "upperBodyCasual",
    "upperBodyFormal", "upperBodyJacket", "upperBodyLogo", "upperBodyPlaid", "upperBodyShortSleeve",
    "upperBodyThinStripes", "upperBodyTshirt", "upperBodyOther", "upperBodyVNeck", "lowerBodyCasual",
    "lowerBodyFormal", "lowerBodyJeans", "lowerBodyShorts", "lowerBodyShortSkirt", "lowerBodyTrousers",
    "footwearLeatherShoes", "footwearSandals", "footwearShoes", "footwearSneaker", "carryingBackpack",
    "carryingOther", "carryingMessengerBag", "carryingNothing", "carryingPlasticBags", "personalLess30",
    "personalLess45", "personalLess60", "personalLarger60", "personalMale")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class AttributeAnnotations:
    image_paths: tuple[Path, ...]
    labels: np.ndarray                    # (N, A) uint8 0/1
    attribute_names: tuple[str, ...]
    train_indices: np.ndarray             # 0-based rows of the training partition
    test_indices: np.ndarray


def load_annotations(kind: str, path: str | Path, partition: int = 0, images_root: str | Path = "") -> AttributeAnnotations:
    """Dispatch by dataset name: pa100k | rap | peta | pkl."""
    path = Path(path)
    if not path.exists():
        raise SlimlabError(f"{path}: annotation file or folder not found")
    loaders = {"pa100k": load_pa100k, "rap": load_rap, "peta": load_peta, "pkl": load_dataset_pkl}
    if kind not in loaders:
        raise SlimlabError(f"unknown dataset '{kind}'; choose one of {', '.join(loaders)}")
    return loaders[kind](path, partition=partition, images_root=images_root)


def load_pa100k(path: Path, partition: int = 0, images_root: str | Path = "") -> AttributeAnnotations:
    file = find_file(path, ("annotation.mat", "annotation/annotation.mat"))
    _single_partition(partition, file, "PA-100K")
    mat = load_mat(file)
    names = [as_text(v) for v in as_list(get_field(mat, "attributes", file))]
    rows, labels, splits = [], [], []
    for split in ("train", "val", "test"):
        images = [as_text(v) for v in as_list(get_field(mat, f"{split}_images_name", file))]
        label = label_matrix(get_field(mat, f"{split}_label", file), f"{file}: '{split}_label'", names, len(images))
        splits.append(np.arange(len(rows), len(rows) + len(images)))
        rows += images
        labels.append(label)
    root = _images_root(images_root, file.parent, ("data/release_data/release_data", "release_data/release_data",
                                                    "data", "release_data"))
    return _annotations(root, rows, np.concatenate(labels), names, np.concatenate(splits[:2]), splits[2])


def load_rap(path: Path, partition: int = 0, images_root: str | Path = "") -> AttributeAnnotations:
    file = find_file(path, ("RAP_annotation.mat", "RAP_annotation/RAP_annotation.mat"))
    rap = get_field(load_mat(file), "RAP_annotation", file)
    version2 = "name" in rap
    images = [as_text(v) for v in as_list(get_field(rap, "name" if version2 else "imagesname", file))]
    names = [as_text(v) for v in as_list(get_field(rap, "attribute" if version2 else "attribute_eng", file))]
    raw = get_field(rap, "data", file) if "data" in rap or version2 else get_field(rap, "label", file)
    labels = label_matrix(raw, f"{file}: 'data'", names, len(images), allowed=None)  # unselected columns: any values
    if "selected_attribute" in rap:
        selected = np.asarray(rap["selected_attribute"], dtype=np.int64).ravel() - 1
    else:
        selected = np.arange(min(51, len(names)))  # RAP v1: the 51 evaluated attributes come first
    if selected.min(initial=0) < 0 or selected.max(initial=0) >= len(names):
        raise SlimlabError(f"{file}: 'selected_attribute' indexes outside the {len(names)} attributes")
    partitions = as_list(get_field(rap, "partition_attribute" if version2 else "partion", file))
    train, test = _partition(partitions, partition, file)
    root = _images_root(images_root, file.parent.parent if file.parent.name == "RAP_annotation" else file.parent,
                        ("RAP_dataset",))
    labels = check_labels(labels[:, selected], f"{file}: 'data'", [names[i] for i in selected], (0, 1, 2))
    labels = np.where(labels == 2, 0, labels)  # 2 marks "uncertain" in RAP
    return _annotations(root, images, labels, [names[i] for i in selected], train, test)


def load_peta(path: Path, partition: int = 0, images_root: str | Path = "") -> AttributeAnnotations:
    if path.is_dir() and not (path / "PETA.mat").exists():
        _single_partition(partition, path, "The PETA release layout (Label.txt folders)")
        return load_peta_label_folders(path)
    file = find_file(path, ("PETA.mat",))
    peta = get_field(load_mat(file), "peta", file)
    data = np.asarray(get_field(peta, "data", file))
    names = [as_text(v) for v in as_list(get_field(peta, "attribute", file))]
    if data.ndim != 2 or data.shape[1] != len(names) + 4:
        raise SlimlabError(f"{file}: 'data' must have 4 id columns + {len(names)} attribute columns, got shape {data.shape}")
    key = next((k for k in peta if "parti" in k), None)
    if key is None:
        raise SlimlabError(f"{file}: struct 'peta' has no partition field (fields: {', '.join(peta)})")
    train, test = _partition(as_list(peta[key]), partition, file)
    evaluated = min(35, len(names))  # the 35 evaluated attributes lead the list
    images = [f"{i + 1:05d}.png" for i in range(data.shape[0])]
    root = _images_root(images_root, file.parent, ("images",))
    labels = label_matrix(data[:, 4:4 + evaluated], f"{file}: 'data' (attribute columns)", names[:evaluated], len(images))
    return _annotations(root, images, labels, names[:evaluated], train, test)


def load_peta_label_folders(folder: Path, seed: int = 0) -> AttributeAnnotations:
    """The original PETA release: every ``<subset>/archive/Label.txt`` names the attributes of each person id."""
    label_files = sorted(folder.glob("*/archive/Label.txt")) or sorted(folder.glob("**/Label.txt"))
    if not label_files:
        raise SlimlabError(f"{folder}: no <subset>/archive/Label.txt files found (is this the PETA release folder?)")
    column = {name: i for i, name in enumerate(PETA_EVALUATED_ATTRIBUTES)}
    paths, rows = [], []
    for label_file in label_files:
        images = sorted(p for p in label_file.parent.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        lines = label_file.read_text(errors="replace").splitlines()
        # Label.txt also names attributes outside the evaluated 35, but a whole file naming none of them is
        # misspelt or in another format, and would train on all-zero labels.
        if not any(token in column for line in lines for token in line.split()[1:]):
            first = next((line.strip() for line in lines if line.strip()), "")
            raise SlimlabError(f"{label_file}: no line names any of the {len(column)} evaluated PETA attributes "
                               f"(e.g. {PETA_EVALUATED_ATTRIBUTES[0]}); first line: '{first}'")
        for line_number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise SlimlabError(f"{label_file}:{line_number}: expected '<id> attribute ...', got '{line.strip()}'")
            person, tokens = fields[0], fields[1:]
            row = np.zeros(len(column), dtype=np.uint8)
            row[[column[t] for t in tokens if t in column]] = 1
            matched = [p for p in images if p.stem == person or p.stem.split("_")[0] == person]
            if not matched:
                raise SlimlabError(f"{label_file}:{line_number}: no image for person id '{person}' in {label_file.parent}")
            paths += matched
            rows += [row] * len(matched)
    order = np.random.default_rng(seed).permutation(len(paths))  # PETA's protocol: random 50% train+10% val / 40% test
    cut = int(round(0.6 * len(paths)))
    return AttributeAnnotations(tuple(paths), np.stack(rows), PETA_EVALUATED_ATTRIBUTES,
                                np.sort(order[:cut]), np.sort(order[cut:]))


def load_dataset_pkl(path: Path, partition: int = 0, images_root: str | Path = "") -> AttributeAnnotations:
    if path.is_dir():
        raise SlimlabError(f"{path}: is a folder; dataset=pkl needs the dataset .pkl file itself")
    try:
        with open(path, "rb") as stream:
            data = ToolboxUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        raise SlimlabError(f"{path}: not a readable dataset pickle ({error})") from error
    if not isinstance(data, dict):
        raise SlimlabError(f"{path}: expected a dict-like dataset description, got {type(data).__name__}")
    images = [str(v) for v in get_field(data, "image_name", path)]
    names = [str(v) for v in get_field(data, "attr_name", path)]
    # -1 marks a negative in some toolbox pickles (their trainers map it to 0), so it is accepted as such
    labels = label_matrix(get_field(data, "label", path), f"{path}: 'label'", names, len(images), allowed=(-1, 0, 1))
    label_idx = data.get("label_idx")
    if label_idx is not None and not isinstance(label_idx, dict):
        raise SlimlabError(f"{path}: 'label_idx' must be a mapping with an 'eval' list of attribute indices, got a "
                           f"{type(label_idx).__name__}")
    evaluated = (label_idx or {}).get("eval")
    if evaluated is not None:
        evaluated = whole_indices(evaluated, f"{path}: 'label_idx.eval'")
        outside = [int(i) for i in evaluated if not 0 <= i < len(names)]
        if outside:
            raise SlimlabError(f"{path}: 'label_idx.eval' index {outside[0]} is outside the {len(names)} attributes "
                               "of 'attr_name'")
        labels, names = labels[:, evaluated], [names[i] for i in evaluated]
    splits = get_field(data, "partition", path)
    if not isinstance(splits, dict):
        raise SlimlabError(f"{path}: 'partition' must be a mapping with 'trainval' (or 'train') and 'test' index "
                           f"lists, got a {type(splits).__name__}")
    train_key = "trainval" if "trainval" in splits else "train"
    train, test = (pick_partition(get_field(splits, k, path), partition, f"{path}: partition '{k}'")
                   for k in (train_key, "test"))
    root = Path(images_root) if images_root else Path(str(data.get("root", path.parent)))
    return _annotations(root, images, labels, names, whole_indices(train, f"{path}: train partition"),
                        whole_indices(test, f"{path}: test partition"), f"{path}: ")


def _annotations(root: Path, images: list[str], labels: np.ndarray, names: list[str], train: np.ndarray,
                 test: np.ndarray, where: str = "") -> AttributeAnnotations:
    for which, indices in (("train", train), ("test", test)):
        if len(indices) and (indices.min() < 0 or indices.max() >= len(images)):
            raise SlimlabError(f"{where}{which} partition indexes outside the {len(images)} images")
    return AttributeAnnotations(tuple(root / name for name in images), (np.asarray(labels) > 0).astype(np.uint8),
                                tuple(names), np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64))


def _partition(partitions: list, index: int, file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) 0-based from a MATLAB partition struct; train includes val when there is one."""
    entry = pick_partition(partitions, index, f"{file}: partition")
    if not isinstance(entry, dict):
        raise SlimlabError(f"{file}: partition {index} is not a struct with train / test indices")
    keys = list(entry)
    train_keys = [k for k in keys if "train" in k.lower() or "val" in k.lower()] or keys[:1]
    test_keys = [k for k in keys if "test" in k.lower()] or keys[-1:]
    ones = lambda k: np.asarray(entry[k], dtype=np.int64).ravel() - 1  # noqa: E731 - MATLAB counts from 1
    return np.sort(np.concatenate([ones(k) for k in train_keys])), ones(test_keys[0])


def _images_root(explicit: str | Path, base: Path, candidates: tuple[str, ...]) -> Path:
    if explicit:
        return Path(explicit)
    return next((base / c for c in candidates if (base / c).is_dir()), base / candidates[0])


def _single_partition(partition: int, file: Path, dataset: str) -> None:
    if partition != 0:
        raise SlimlabError(f"{file}: {dataset} has a single train/test split, so partition={partition} does not "
                           "apply; leave partition at 0")
