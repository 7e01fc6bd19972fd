"""The weight files of an HF checkpoint folder: ``model.safetensors`` (read lazily, one tensor at a time),
sharded safetensors behind ``model.safetensors.index.json``, or ``pytorch_model.bin``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open

from slimlab.ckpt.names import tensor_shape
from slimlab.core.errors import SlimlabError
from slimlab.core.torch_files import load_torch_file

MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_model_tensors(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    if (folder / "model.safetensors").exists():
        return _read_safetensors(folder / "model.safetensors"), "model.safetensors"
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        weight_map = _weight_map(index_path)
        shards = [_read_safetensors(folder / shard) for shard in dict.fromkeys(weight_map.values())]
        return _ChainedTensors(shards), "model.safetensors.index.json"
    if (folder / "pytorch_model.bin").exists():
        state = load_torch_file(folder / "pytorch_model.bin")
        if not isinstance(state, dict):
            raise SlimlabError(f"{folder / 'pytorch_model.bin'}: expected a state dict")
        return dict(state), "pytorch_model.bin"
    raise SlimlabError(f"{folder}: no model weights found (expected one of {', '.join(MODEL_FILES)})")


class _ChainedTensors(Mapping):
    """Several lazy shards seen as one mapping."""

    def __init__(self, shards: list[Mapping[str, torch.Tensor]]):
        self.owner = {name: shard for shard in shards for name in shard}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.owner[name][name]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return tensor_shape(self.owner[name], name)

    def __iter__(self):
        return iter(self.owner)

    def __len__(self) -> int:
        return len(self.owner)


def _weight_map(index_path: Path) -> dict[str, str]:
    """The tensor -> shard map of a sharded checkpoint, checked: shard names are files inside its folder."""
    try:
        index = json.loads(index_path.read_text())
    except ValueError as error:
        raise SlimlabError(f"{index_path}: not valid JSON ({error})") from error
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SlimlabError(f"{index_path}: not a safetensors index (needs a 'weight_map' of tensor -> shard file)")
    for shard in set(weight_map.values()):
        if not is_plain_relative(shard):
            raise SlimlabError(f"{index_path}: shard '{shard}' is not a file name inside the checkpoint folder")
    return weight_map


def is_plain_relative(name: str) -> bool:
    """True for a relative path that stays inside its folder (no absolute path, no '..', no empty part)."""
    parts = name.replace("\\", "/").split("/")
    return bool(name) and not name.startswith("/") and ":" not in parts[0] and \
        all(part not in ("", ".", "..") for part in parts)


def weight_shards(folder: Path) -> set[str]:
    index_path = folder / "model.safetensors.index.json"
    return set(_weight_map(index_path).values()) if index_path.exists() else set()


class LazySafetensors(Mapping):
    """Tensors of a safetensors file, read one at a time on access, so encoding streams tensor by tensor."""

    def __init__(self, path: Path):
        self.path = path
        open(path, "rb").close()  # unreadable: the OSError names the file (safetensors' message would not)
        try:
            with safe_open(str(path), framework="pt") as handle:
                self.names = list(handle.keys())
                self.shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in self.names}
        except Exception as error:  # safetensors raises its own error types for truncated / bad headers
            raise SlimlabError(f"{path}: not a readable safetensors file ({error})") from error

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.shapes:
            raise KeyError(name)
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                return handle.get_tensor(name)
        except Exception as error:
            raise SlimlabError(f"{self.path}: tensor '{name}' cannot be read ({error})") from error

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _read_safetensors(path: Path) -> Mapping[str, torch.Tensor]:
    tensors = LazySafetensors(path)
    file_size = path.stat().st_size
    with open(path, "rb") as stream:  # check the data section is complete before any work is done
        header_length = int.from_bytes(stream.read(8), "little")
        header = json.loads(stream.read(header_length))
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + header_length + end > file_size:
        raise SlimlabError(f"{path}: not a readable safetensors file (truncated: {file_size} bytes, "
                           f"header promises {8 + header_length + end})")
    return tensors
