"""Readers for the fields of PAR annotation files (MATLAB structs, toolbox pickles): each names the file and the
field it could not use. ``annotations.py`` composes them into the per-dataset loaders."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from slimlab.core.errors import SlimlabError


def whole_indices(values: Any, where: str) -> np.ndarray:
    """Whole-number indices as int64; fractions (a float column read by mistake) are an error, not truncated."""
    array = np.asarray(values).ravel()
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array))):
            raise SlimlabError(f"{where}: indices must be whole numbers, got {array[:3].tolist()}")
    return array.astype(np.int64)


# Exactly the callables a dataset pickle of the PAR toolboxes needs (arrays, dtypes, scalars, containers); a whole
# module is never allowed, since e.g. builtins.exec or numpy's file readers would run whatever the file says.
_PICKLE_ALLOWED = {
    **{(core + suffix, name): None for core in ("numpy.core", "numpy._core")
       for suffix, name in ((".multiarray", "_reconstruct"), (".multiarray", "scalar"), (".numeric", "_frombuffer"))},
    ("numpy", "ndarray"): None, ("numpy", "dtype"): None,
    ("collections", "OrderedDict"): None, ("copyreg", "_reconstructor"): None, ("_codecs", "encode"): None,
    **{("builtins", name): None for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                                             "bool", "str", "bytes", "bytearray", "object")},
}


class ToolboxUnpickler(pickle.Unpickler):
    """Reads toolbox pickles without their dependencies: EasyDict becomes a plain dict; only data types load."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("easydict"):
            return _PlainDict
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only arrays and plain containers are read)")


class _PlainDict(dict):
    def __setstate__(self, state: Any) -> None:
        pass  # EasyDict stores its items both as keys and attributes; the keys are enough


def pick_partition(value: Any, index: int, where: str) -> Any:
    items = value if isinstance(value, list) and value and not np.isscalar(value[0]) else [value]
    if isinstance(value, np.ndarray) and value.dtype == object:
        items = list(value.ravel())
    if not 0 <= index < len(items):
        raise SlimlabError(f"{where}: has {len(items)} partition(s), asked for number {index}")
    return np.asarray(items[index]) if not isinstance(items[index], dict) else items[index]


def load_mat(file: Path) -> dict:
    import scipy.io
    try:
        return scipy.io.loadmat(str(file), simplify_cells=True)
    except Exception as error:  # scipy raises several types for a damaged file
        raise SlimlabError(f"{file}: cannot read as a MATLAB .mat file ({error})") from error


def find_file(path: Path, names: tuple[str, ...]) -> Path:
    if path.is_file():
        return path
    for name in names:
        if (path / name).is_file():
            return path / name
    raise SlimlabError(f"{path}: none of {', '.join(names)} found in this folder")


def get_field(container: Any, key: str, file: Path) -> Any:
    if not isinstance(container, dict) or key not in container:
        known = ", ".join(k for k in container if not k.startswith("__")) if isinstance(container, dict) else "none"
        raise SlimlabError(f"{file}: missing field '{key}' (found: {known})")
    return container[key]


def as_list(value: Any) -> list:
    if isinstance(value, np.ndarray):
        return list(value.ravel()) if value.dtype == object or value.dtype.kind in "US" else list(value.reshape(-1))
    return list(value) if isinstance(value, (list, tuple)) else [value]


def as_text(value: Any) -> str:
    while isinstance(value, (np.ndarray, list)) and not isinstance(value, str) and len(value) == 1:
        value = value[0]
    return str(value)


def label_matrix(value: Any, where: str, names: list[str], images: int,
            allowed: tuple[int, ...] | None = (0, 1)) -> np.ndarray:
    """(images, attributes) labels, each one of ``allowed`` (unless None)."""
    matrix = np.asarray(value)
    if images == 0 and matrix.size == 0:
        return np.zeros((0, len(names)), dtype=np.int64)  # MATLAB files keep no shape for an empty matrix
    if matrix.ndim == 1 and images == 1:
        matrix = matrix[None]
    if matrix.ndim != 2 or matrix.shape[0] != images or matrix.shape[1] != len(names):
        raise SlimlabError(f"{where} has shape {matrix.shape} but there are {images} images and {len(names)} "
                           f"attribute names")
    return matrix if allowed is None else check_labels(matrix, where, names, allowed)


def check_labels(matrix: np.ndarray, where: str, names: list[str], allowed: tuple[int, ...]) -> np.ndarray:
    """``matrix`` as int64 if every entry is one of ``allowed``; anything else (NaN, 0.5, a -1 or 2 where it
    means nothing) is an error naming the entry, never binarised or cast silently."""
    if matrix.dtype.kind not in "biuf":
        raise SlimlabError(f"{where} must hold numbers, got {matrix.dtype} values")
    bad = np.argwhere(~np.isin(matrix, allowed))
    if len(bad):
        row, column = bad[0]
        raise SlimlabError(f"{where}: value {matrix[row, column]} for image {row}, attribute '{names[column]}' "
                           f"({len(bad)} such entries); labels must be {' or '.join(map(str, allowed))}")
    return matrix.astype(np.int64)
