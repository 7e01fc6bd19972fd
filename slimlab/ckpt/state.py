"""Checkpoints in memory: model tensors, optimizer state keyed by parameter name, and side files.

Readers accept a Hugging Face Trainer folder (``model.safetensors`` [sharded or not] or
``pytorch_model.bin``, ``optimizer.pt``, plus ``trainer_state.json``, ``scheduler.pt``, ... kept verbatim)
and a plain ``torch.save`` file holding ``{"model": state_dict, "optimizer": optimizer_state_dict, ...}``.
Writers produce the same layouts, so ``transformers`` and ``torch`` load the result unchanged.

Optimizer state is indexed by integer ids in PyTorch; ExCP pairs each parameter's Adam moments with its
weights, so the ids are mapped to model tensor names (see ``names.py``).
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_save

from slimlab.ckpt.names import PARAM_NAMES_FILE, infer_parameter_names, tensor_shape
from slimlab.ckpt.weight_files import MODEL_FILES, is_plain_relative, read_model_tensors, weight_shards
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory, atomic_write_bytes, refuse_output_over_inputs
from slimlab.core.torch_files import load_torch_file

OPTIMIZER_FILE = "optimizer.pt"


@dataclass
class OptimizerState:
    """A torch optimizer ``state_dict`` with each parameter id mapped to a model tensor name ('' if unknown)."""
    param_names: list[str]
    state: dict[int, dict[str, Any]]
    param_groups: list[dict[str, Any]]

    def tensor_shapes(self) -> dict[int, tuple[int, ...]]:
        shapes = {}
        for index, entry in self.state.items():
            for value in entry.values():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    shapes[index] = tuple(value.shape)
                    break
        return shapes

    def to_torch(self) -> dict[str, Any]:
        return {"state": self.state, "param_groups": self.param_groups}


@dataclass
class CheckpointState:
    """Everything one training checkpoint holds."""
    model: dict[str, torch.Tensor]                       # stored tensors, in the file's order
    optimizer: OptimizerState | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # tied name -> stored name it shares memory with
    files: dict[str, bytes] = field(default_factory=dict)  # other files of the folder, verbatim
    layout: str = "hf"                                     # "hf" folder or "torch" single file
    model_file: str = "model.safetensors"                  # how the weights were stored (hf layout)
    extra: bytes = b""                                     # other top-level keys of a torch file (torch.save bytes)
    step: int | None = None

    def parameter_count(self) -> int:
        return sum(tensor.numel() for tensor in self.model.values())


def read_checkpoint(path: str | Path, param_names: list[str] | None = None) -> CheckpointState:
    """Read an HF Trainer checkpoint folder or a torch.save file; never modifies it."""
    path = Path(path)
    if not path.exists():
        raise SlimlabError(f"{path}: no such checkpoint file or folder")
    if path.is_dir():
        return _read_hf_folder(path, param_names)
    return _read_torch_file(path, param_names)


def _read_hf_folder(folder: Path, param_names: list[str] | None) -> CheckpointState:
    model, model_file = read_model_tensors(folder)
    aliases: dict[str, str] = {}
    if isinstance(model, dict):  # safetensors never shares memory; pickled weights may (tied embeddings)
        model, aliases = _deduplicate_tied(model, str(folder / model_file))
    optimizer = None
    optimizer_path = folder / OPTIMIZER_FILE
    if optimizer_path.exists():
        raw = load_torch_file(optimizer_path)
        optimizer = _optimizer_from_dict(raw, optimizer_path)
        names = param_names or _sidecar_names(folder) or infer_parameter_names(folder, model, optimizer)
        optimizer.param_names = attach_parameter_names(names, model, optimizer, optimizer_path)
    skip = {OPTIMIZER_FILE, PARAM_NAMES_FILE, *MODEL_FILES, *weight_shards(folder)}
    files = {}
    for item in sorted(folder.rglob("*")):
        relative = item.relative_to(folder).as_posix()
        if item.is_file() and relative not in skip:
            files[relative] = item.read_bytes()
    step = _step_from_trainer_state(files.get("trainer_state.json"))
    return CheckpointState(model, optimizer, aliases, files, "hf", model_file, step=step)


def _read_torch_file(path: Path, param_names: list[str] | None) -> CheckpointState:
    raw = load_torch_file(path)
    if not isinstance(raw, dict):
        raise SlimlabError(f"{path}: expected a dict with 'model' (and 'optimizer'), got {type(raw).__name__}")
    if "model" in raw and isinstance(raw["model"], dict):
        model_state = raw["model"]
    elif "state_dict" in raw and isinstance(raw["state_dict"], dict):
        model_state = raw["state_dict"]
    elif raw and all(isinstance(value, torch.Tensor) for value in raw.values()):
        model_state = raw
    else:
        raise SlimlabError(f"{path}: no 'model' or 'state_dict' entry holding a state dict")
    model, aliases = _deduplicate_tied(dict(model_state), str(path))
    optimizer = None
    if isinstance(raw.get("optimizer"), dict):
        optimizer = _optimizer_from_dict(raw["optimizer"], path)
        names = param_names or raw.get("param_names") or infer_parameter_names(None, model, optimizer)
        optimizer.param_names = attach_parameter_names(names, model, optimizer, path)
    consumed = {key for key in ("model", "state_dict") if raw.get(key) is model_state}
    if optimizer is not None:
        consumed |= {"optimizer", "param_names"}
    rest = {key: value for key, value in raw.items() if key not in consumed} if model_state is not raw else {}
    extra = _extra_bytes(rest)
    step = raw.get("step") if isinstance(raw.get("step"), int) else None
    return CheckpointState(model, optimizer, aliases, {}, "torch", "", extra, step)


def _extra_bytes(rest: dict[str, Any]) -> bytes:
    """The entries beside model and optimizer (epoch, scheduler, a second optimizer, ...) as one torch.save blob;
    they were read with ``weights_only=True``, so they load back the same way, without running code."""
    return _torch_bytes(rest) if rest else b""


def _optimizer_from_dict(raw: Any, path: Path) -> OptimizerState:
    if not isinstance(raw, dict) or "state" not in raw or "param_groups" not in raw:
        raise SlimlabError(f"{path}: not an optimizer state dict (needs 'state' and 'param_groups')")
    if not isinstance(raw["state"], dict):
        raise SlimlabError(f"{path}: optimizer 'state' is a {type(raw['state']).__name__}, not a dict")
    state = {}
    for index, entry in raw["state"].items():
        if not isinstance(index, int) or not isinstance(entry, dict):
            raise SlimlabError(f"{path}: optimizer state entry {index!r} is not an integer parameter id with a dict "
                               "of state")
        state[index] = dict(entry)
    groups = raw["param_groups"]
    if not isinstance(groups, list):
        raise SlimlabError(f"{path}: optimizer 'param_groups' is a {type(groups).__name__}, not a list")
    for position, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) or \
                not all(isinstance(index, int) for index in group["params"]):
            raise SlimlabError(f"{path}: optimizer param group {position} has no 'params' list of parameter ids")
    return OptimizerState([], state, [dict(group) for group in groups])


def attach_parameter_names(names: list[str], model: dict[str, torch.Tensor], optimizer: OptimizerState, path: Path) -> list[str]:
    ids = [index for group in optimizer.param_groups for index in group["params"]]
    if len(names) != len(ids):
        raise SlimlabError(f"{path}: {len(names)} parameter names given for {len(ids)} optimizer parameters")
    shapes = optimizer.tensor_shapes()
    for index, name in zip(ids, names):
        if name and name not in model:
            raise SlimlabError(f"{path}: parameter name '{name}' is not a tensor of the model")
        if name and index in shapes and tensor_shape(model, name) != shapes[index]:
            raise SlimlabError(f"{path}: optimizer state of parameter {index} has shape {shapes[index]} but "
                               f"'{name}' has {tensor_shape(model, name)}")
    ordered = [""] * (max(ids) + 1 if ids else 0)
    for index, name in zip(ids, names):
        ordered[index] = name
    return ordered


def _sidecar_names(folder: Path) -> list[str] | None:
    path = folder / PARAM_NAMES_FILE
    if not path.exists():
        return None
    try:
        names = json.loads(path.read_text())
    except ValueError as error:
        raise SlimlabError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SlimlabError(f"{path}: expected a JSON list of parameter names")
    return names


def _deduplicate_tied(model: dict[str, torch.Tensor], where: str = "") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store tensors that share memory (tied embeddings) once; remember the other names as aliases."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple, tuple], str] = {}
    for name, tensor in model.items():
        if not isinstance(tensor, torch.Tensor):
            raise SlimlabError(f"{where or 'model'}: entry '{name}' is a {type(tensor).__name__}, not a tensor")
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            kept[name] = tensor
    return kept, aliases


def _step_from_trainer_state(data: bytes | None) -> int | None:
    if not data:
        return None
    try:
        trainer_state = json.loads(data)
        return int(trainer_state.get("global_step")) if isinstance(trainer_state, dict) else None
    except (ValueError, TypeError, OverflowError):  # the step is informative only; a strange file keeps None
        return None


def _torch_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _dropped_by_layout(state: CheckpointState, layout: str) -> str:
    """What converting ``state`` to ``layout`` would lose: the side files of a folder (trainer_state.json,
    scheduler.pt, ...) have no place in a torch file, a torch file's extra entries none in a folder."""
    if layout == state.layout:
        return ""
    if layout == "torch" and state.files:
        return "the files " + ", ".join(sorted(state.files))
    if layout == "hf" and state.extra:
        return "the extra entries " + ", ".join(sorted(torch.load(io.BytesIO(state.extra), weights_only=True)))
    return ""


def write_checkpoint(state: CheckpointState, out: str | Path, layout: str | None = None, overwrite: bool = False,
                     inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write a checkpoint folder (hf) or file (torch) atomically; tied tensors are shared again on load. A folder
    never replaces one of ``inputs`` (the files it was decoded from)."""
    out = Path(out)
    layout = layout or state.layout
    for relative in state.files:  # names come from a file: never let one write outside the output folder
        if not is_plain_relative(relative):
            raise SlimlabError(f"{out}: side file name '{relative}' is not a path inside the checkpoint folder; "
                               "refused")
    dropped = _dropped_by_layout(state, layout)
    if dropped:  # an explicit conversion: done, but never silently
        print(f"note: {out}: a {layout} checkpoint has no place for {dropped} of the {state.layout} checkpoint; "
              f"they are not carried over (write it as {state.layout} to keep them)", file=sys.stderr)
    full_model = dict(state.model)
    for alias, target in state.aliases.items():
        full_model[alias] = state.model[target]
    if layout == "torch":
        payload: dict[str, Any] = {"model": full_model}
        if state.optimizer is not None:
            payload["optimizer"] = state.optimizer.to_torch()
            payload["param_names"] = [name for name in _names_in_group_order(state.optimizer)]
        if state.extra:
            payload.update(torch.load(io.BytesIO(state.extra), weights_only=True))
        data = _torch_bytes(payload)
        refuse_output_over_inputs(out, inputs)
        if out.exists() and not overwrite:
            raise SlimlabError(f"{out}: already exists; choose another output or pass overwrite")
        atomic_write_bytes(out, data)
        return out
    with atomic_directory(out, overwrite=overwrite, inputs=inputs) as folder:
        if state.model_file == "pytorch_model.bin":
            # serialised in memory, then written: a full disk surfaces as OSError (named by atomic_directory), not
            # as the RuntimeError torch.save raises when its own file write fails
            (folder / "pytorch_model.bin").write_bytes(_torch_bytes(full_model))
        else:  # safetensors forbids shared memory: save tied names once, as transformers does
            tensors = {name: tensor.contiguous() for name, tensor in state.model.items()}
            (folder / "model.safetensors").write_bytes(safetensors_save(tensors, metadata={"format": "pt"}))
        if state.optimizer is not None:
            (folder / OPTIMIZER_FILE).write_bytes(_torch_bytes(state.optimizer.to_torch()))
            (folder / PARAM_NAMES_FILE).write_text(json.dumps(_names_in_group_order(state.optimizer)))
        for relative, data in state.files.items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return out


def _names_in_group_order(optimizer: OptimizerState) -> list[str]:
    return [optimizer.param_names[index] if index < len(optimizer.param_names) else ""
            for group in optimizer.param_groups for index in group["params"]]
