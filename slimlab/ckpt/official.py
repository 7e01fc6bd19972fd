"""Import checkpoints stored in the official ExCP format (``compressed.pt`` of ``compress_pythia.py``).

That file is ``torch.save`` of ``{tensor name: {weights_i, weights_c, opt_v_i, opt_v_c, opt_m_i, opt_m_c}}``:

- ``*_i`` with a ``*_c`` beside it: k-means indices packed ``8 // b`` per byte (uint8, the first index in the
  most significant bits), index 0 meaning exact zero and index k meaning ``codebook[k - 1]``; the codebook
  is float16 with ``2**b - 1`` entries, so ``b`` is read from its length.
- ``*_i`` alone: the tensor itself in float (the official code leaves tensors with at most ``2**b - 1``
  non-zeros unquantized).
- ``weights`` is the residual against the reference (previous reconstructed) checkpoint. The names are
  swapped in the official code: ``opt_v`` holds Adam's first moment ``exp_avg`` and ``opt_m`` the second
  moment ``exp_avg_sq``.

The file carries no optimizer scalars, so, as in the official reconstruction, ``step``, learning rates and
the param groups come from the reference checkpoint (``step=`` overrides the step). Float16 codebooks can
flush a second moment to zero where the first is not; such first-moment entries are zeroed, as slimlab's own
decoder guarantees, so a resumed AdamW step does not divide by eps. The file is read with torch's restricted
unpickler (tensors, dicts and plain values only), never with arbitrary pickle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimlab.ckpt.state import CheckpointState, OptimizerState, read_checkpoint, write_checkpoint
from slimlab.core.errors import SlimlabError
from slimlab.core.torch_files import load_torch_file

# weights = residual, opt_v = exp_avg, opt_m = exp_avg_sq (the official names are swapped)
ENTRY_KEYS = {f"{stream}_{suffix}" for stream in ("weights", "opt_v", "opt_m") for suffix in ("i", "c")}


@dataclass(frozen=True)
class ImportSummary:
    out: Path
    tensors: int                # tensors rebuilt from the file
    copied: int                 # model tensors not in the file, kept from the reference
    first_moments_zeroed: int   # exp_avg entries zeroed because the decoded exp_avg_sq was 0 there


def unpack_indices(packed: torch.Tensor, codebook: torch.Tensor, count: int, where: str) -> torch.Tensor:
    """Packed uint8 indices + float16 codebook -> float32 values, (count,)."""
    entries = codebook.numel()
    bits = int(round(math.log2(entries + 1)))
    if entries < 1 or 2 ** bits - 1 != entries or 8 % bits:
        raise SlimlabError(f"{where}: codebook has {entries} entries; the official format uses 2**b - 1 with b "
                           "in 1, 2, 4, 8")
    if packed.dtype != torch.uint8:
        raise SlimlabError(f"{where}: packed indices must be uint8, got {packed.dtype}")
    per_byte = 8 // bits
    if packed.numel() * per_byte != count:
        raise SlimlabError(f"{where}: {packed.numel()} bytes hold {packed.numel() * per_byte} {bits}-bit indices, "
                           f"the reference tensor has {count} elements")
    shifts = torch.arange(per_byte - 1, -1, -1, dtype=torch.int64) * bits          # most significant first
    indices = (packed.reshape(-1, 1).to(torch.int64) >> shifts) & (2 ** bits - 1)  # (bytes, per_byte)
    table = torch.cat([torch.zeros(1), codebook.reshape(-1).to(torch.float32)])    # index 0 = exact zero
    return table[indices.reshape(-1)]


def decode_stream(entry: dict[str, Any], stream: str, count: int, where: str) -> torch.Tensor:
    """One of ``weights`` / ``opt_v`` / ``opt_m`` of an entry -> float32, (count,)."""
    values = entry.get(f"{stream}_i")
    if not isinstance(values, torch.Tensor):
        found = "missing" if values is None else f"a {type(values).__name__}, not a tensor"
        raise SlimlabError(f"{where}: '{stream}_i' is {found}")
    codebook = entry.get(f"{stream}_c")
    if codebook is None:
        if values.numel() != count:
            raise SlimlabError(f"{where}: '{stream}_i' has {values.numel()} values, the reference tensor {count}")
        return values.reshape(-1).to(torch.float32)
    if not isinstance(codebook, torch.Tensor):
        raise SlimlabError(f"{where}: '{stream}_c' is a {type(codebook).__name__}, not a tensor")
    return unpack_indices(values, codebook, count, f"{where} '{stream}_i'")


def load_official(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise SlimlabError(f"{path}: is a folder; give the compressed.pt file" if path.is_dir() else
                           f"{path}: no such file")
    raw = load_torch_file(path, "official ExCP file")
    if not isinstance(raw, dict) or not raw:
        raise SlimlabError(f"{path}: expected a non-empty dict of tensor name -> compressed entry")
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise SlimlabError(f"{path}: entry '{name}' is a {type(entry).__name__}, not a dict")
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise SlimlabError(f"{path}: entry '{name}' has unknown keys {unknown} (expected {sorted(ENTRY_KEYS)})")
    return raw


def import_official(compressed: str | Path, reference: str | Path, out: str | Path, step: int | None = None,
                    param_names: list[str] | None = None, overwrite: bool = False) -> ImportSummary:
    """Rebuild the checkpoint coded in ``compressed`` against ``reference`` and write it to ``out``.

    ``reference`` is the checkpoint the official script coded against (HF folder or torch file); the output
    has its layout, its side files and its tensor dtypes. Neither input is modified.
    """
    entries = load_official(compressed)
    state = read_checkpoint(reference, param_names)
    if state.optimizer is None:
        raise SlimlabError(f"{reference}: the reference has no optimizer state to take the scalars from")
    ids = {name: index for index, name in enumerate(state.optimizer.param_names) if name}
    model = dict(state.model)
    optimizer_state = {index: dict(entry) for index, entry in state.optimizer.state.items()}
    zeroed, rebuilt_names = 0, set()
    for name, entry in entries.items():
        where = f"{compressed}: '{name}'"
        if name in state.aliases:  # a tied name (the official code codes every state_dict name)
            if state.aliases[name] in entries:
                continue  # the shared tensor is rebuilt once, from its stored name's entry
            name, where = state.aliases[name], f"{where} (tied to '{state.aliases[name]}')"
        if name not in model:
            raise SlimlabError(f"{where} is not a tensor of the reference checkpoint {reference}")
        if name not in ids or ids[name] not in optimizer_state:
            raise SlimlabError(f"{where} has no Adam state in the reference checkpoint {reference}")
        base = model[name]
        moments = optimizer_state[ids[name]]
        if "exp_avg" not in moments or "exp_avg_sq" not in moments:
            raise SlimlabError(f"{where}: the reference optimizer state is not Adam's (no exp_avg / exp_avg_sq)")
        count = base.numel()
        residual = decode_stream(entry, "weights", count, where)
        first = decode_stream(entry, "opt_v", count, where)       # official 'opt_v' = exp_avg
        second = decode_stream(entry, "opt_m", count, where)      # official 'opt_m' = exp_avg_sq
        orphaned = (second <= 0) & (first != 0)
        zeroed += int(orphaned.sum())
        first = torch.where(orphaned, torch.zeros(()), first)
        model[name] = (base.to(torch.float32) + residual.reshape(base.shape)).to(base.dtype)
        rebuilt_names.add(name)
        moments["exp_avg"] = first.reshape(base.shape).to(moments["exp_avg"].dtype)
        moments["exp_avg_sq"] = second.clamp_min(0).reshape(base.shape).to(moments["exp_avg_sq"].dtype)
    files = dict(state.files)
    if step is not None:
        _set_step(optimizer_state, files, step)
    rebuilt = CheckpointState(model, OptimizerState(state.optimizer.param_names, optimizer_state,
                                                    state.optimizer.param_groups),
                              state.aliases, files, state.layout, state.model_file, state.extra,
                              step if step is not None else state.step)
    written = write_checkpoint(rebuilt, out, overwrite=overwrite, inputs=(compressed, reference))
    return ImportSummary(written, len(rebuilt_names), len(model) - len(rebuilt_names), zeroed)


def _set_step(optimizer_state: dict[int, dict[str, Any]], files: dict[str, bytes], step: int) -> None:
    for moments in optimizer_state.values():
        if "step" in moments:
            old = moments["step"]
            moments["step"] = torch.tensor(float(step), dtype=old.dtype) if isinstance(old, torch.Tensor) else step
    if "trainer_state.json" in files:
        try:
            trainer_state = json.loads(files["trainer_state.json"])
        except ValueError as error:
            raise SlimlabError(f"trainer_state.json of the reference is not valid JSON ({error})") from error
        if not isinstance(trainer_state, dict):
            raise SlimlabError("trainer_state.json of the reference is not a JSON object")
        trainer_state["global_step"] = step
        files["trainer_state.json"] = json.dumps(trainer_state, indent=2).encode()
