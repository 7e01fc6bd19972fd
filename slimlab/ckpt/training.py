"""Compressed checkpoints in plain PyTorch loops: ``save_compressed`` / ``load_compressed``.

Under ``torchrun`` each rank writes its own sub-chain (``rank-00000``, ``rank-00001``, ...) holding the
model and optimizer state that rank owns (for example with ``ZeroRedundancyOptimizer`` or FSDP's local
shards), so nothing is gathered across ranks.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slimlab.ckpt.chain import CheckpointChain
from slimlab.ckpt.codec import EncodeResult, ExcpCodec
from slimlab.ckpt.names import names_from_live_objects
from slimlab.ckpt.state import CheckpointState, OptimizerState, _deduplicate_tied, attach_parameter_names
from slimlab.core.distributed import rank, world_size
from slimlab.core.errors import SlimlabError

_OPEN_CHAINS: dict[tuple[Path, ExcpCodec], CheckpointChain] = {}


def rank_folder(chain_dir: str | Path) -> Path:
    chain_dir = Path(chain_dir)
    return chain_dir / f"rank-{rank():05d}" if world_size() > 1 else chain_dir


def state_from_objects(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                       model_state: dict[str, torch.Tensor] | None = None,
                       optimizer_state: dict | None = None) -> CheckpointState:
    """Snapshot live objects (or the local shards passed explicitly) with exact parameter names."""
    # Find tied tensors before copying: the copy would give each name its own memory.
    tensors, aliases = _deduplicate_tied(dict(model_state or model.state_dict()))
    tensors = {name: tensor.detach().to("cpu", copy=True) for name, tensor in tensors.items()}
    optimizer_record = None
    if optimizer is not None:
        raw = optimizer_state if optimizer_state is not None else optimizer.state_dict()
        state = {int(index): {key: value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value
                              for key, value in entry.items()} for index, entry in raw["state"].items()}
        optimizer_record = OptimizerState([], state, [dict(group) for group in raw["param_groups"]])
        names = names_from_live_objects(model, optimizer)
        optimizer_record.param_names = attach_parameter_names(names, tensors, optimizer_record, Path("optimizer"))
    return CheckpointState(tensors, optimizer_record, aliases, layout="torch")


def save_compressed(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, chain_dir: str | Path,
                    step: int, codec: ExcpCodec | None = None, **shards) -> EncodeResult:
    """Append this rank's checkpoint at ``step`` to the chain in ``chain_dir`` (keyframes every K)."""
    codec = codec or ExcpCodec()
    if not isinstance(codec, ExcpCodec):
        raise SlimlabError(f"codec must be an ExcpCodec (e.g. ExcpCodec(mode='{codec}')), got {type(codec).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise SlimlabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    folder = rank_folder(chain_dir)
    key = (folder.resolve(), codec)
    # keep the chain object (it holds the last reconstruction as the next reference) while the folder is unchanged
    if key not in _OPEN_CHAINS or not _OPEN_CHAINS[key].matches_disk():
        _OPEN_CHAINS[key] = CheckpointChain(folder, codec)
    return _OPEN_CHAINS[key].append(state_from_objects(model, optimizer, **shards), step)


def load_compressed(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, chain_dir: str | Path,
                    step: int | None = None, stats: dict[str, int] | None = None, strict: bool = True) -> int | None:
    """Restore model and optimizer of this rank from the chain (latest step by default); returns the step.

    ``strict=False`` loads a shard: only the tensors this rank stored are replaced.
    """
    folder = rank_folder(chain_dir)
    state = CheckpointChain(folder).load(step, stats)
    full = dict(state.model)
    for alias, target in state.aliases.items():
        full[alias] = state.model[target]
    try:
        model.load_state_dict(full, strict=strict)
    except RuntimeError as error:
        raise SlimlabError(f"{folder}: the checkpoint does not fit this model: {error}") from error
    if optimizer is not None:
        if state.optimizer is None:
            raise SlimlabError(f"{folder}: the checkpoint holds no optimizer state")
        try:
            optimizer.load_state_dict(state.optimizer.to_torch())
        except (ValueError, KeyError) as error:
            raise SlimlabError(f"{folder}: the optimizer state does not fit this optimizer: {error}") from error
    return state.step
