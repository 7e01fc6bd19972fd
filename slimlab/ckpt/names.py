"""Map optimizer parameter ids to model tensor names.

PyTorch numbers parameters 0..P-1 across the optimizer's param groups, in the order the groups list them;
the names are not saved. slimlab records them itself (``slimlab_param_names.json`` beside ``optimizer.pt``,
or ``param_names`` in a torch file, written by the callback and ``save_compressed``). For checkpoints that
lack them, the order is rebuilt:

1. HF folders with a ``config.json``: the model is built on the ``meta`` device (no memory, no weights) to get
   ``named_parameters()`` order, and split into the two groups the HF Trainer makes (weight decay / none).
2. Otherwise the model's tensor order is used.

Either order is then matched greedily against the shapes of the optimizer state, so buffers and frozen
tensors are skipped. The mapping only steers joint shrinking (which weights pair with which moments);
reconstruction is exact whatever it is.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from slimlab.core.errors import SlimlabError

PARAM_NAMES_FILE = "slimlab_param_names.json"


def infer_parameter_names(folder: Path | None, model: dict[str, torch.Tensor], optimizer) -> list[str]:
    """Names in group order (one per entry of the concatenated ``params`` lists)."""
    ids = [index for group in optimizer.param_groups for index in group["params"]]
    shapes = optimizer.tensor_shapes()
    candidate_orders = []
    if folder is not None:
        hf_order = _hf_trainer_order(folder, len(optimizer.param_groups))
        if hf_order:
            candidate_orders.append(hf_order)
    candidate_orders.append(list(model))
    for order in candidate_orders:
        names = _greedy_match([name for name in order if name in model], model, ids, shapes)
        if names is not None:
            return names
    raise SlimlabError(f"{folder or 'checkpoint'}: cannot tell which model tensor each of the {len(ids)} optimizer "
                       f"parameters belongs to; pass --param-names FILE (a JSON list of names in optimizer order)")


def names_from_live_objects(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Exact mapping by parameter identity (used while training, where both objects exist)."""
    by_identity = {id(parameter): name for name, parameter in model.named_parameters(remove_duplicate=True)}
    return [by_identity.get(id(parameter), "") for group in optimizer.param_groups for parameter in group["params"]]


def tensor_shape(model, name: str) -> tuple[int, ...]:
    """Shape without reading the data when the mapping is lazy (it then offers ``shape_of``)."""
    shape_of = getattr(model, "shape_of", None)
    return tuple(shape_of(name)) if shape_of else tuple(model[name].shape)


def _greedy_match(order: list[str], model, ids: list[int], shapes) -> list[str] | None:
    names = []
    position = 0
    for index in ids:
        wanted = shapes.get(index)
        while position < len(order) and wanted is not None and tensor_shape(model, order[position]) != wanted:
            position += 1
        if position >= len(order):
            return None
        names.append(order[position])
        position += 1
    return names


def _hf_trainer_order(folder: Path, group_count: int) -> list[str] | None:
    if not (folder / "config.json").exists():
        return None
    try:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, Trainer

        config = AutoConfig.from_pretrained(folder)
        architecture = getattr(transformers, (config.architectures or [""])[0], None)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = architecture(config) if architecture is not None else AutoModelForCausalLM.from_config(config)
        names = [name for name, parameter in module.named_parameters() if parameter.requires_grad]
        if group_count == 2:  # the HF Trainer's split: decayed parameters first, then the rest
            decay = set(Trainer.get_decay_parameter_names(None, module))
            names = [name for name in names if name in decay] + [name for name in names if name not in decay]
        return names
    except (ImportError, OSError, ValueError, TypeError, KeyError, json.JSONDecodeError):
        return None


def align_live_names_with_file(names: list[str], module: torch.nn.Module, file_tensors: dict[str, torch.Tensor]) -> list[str]:
    """Rename live parameter names to the keys the file uses.

    ``save_pretrained`` may write legacy keys (``lm_head.weight`` is saved as ``embed_out.weight`` for
    GPT-NeoX in transformers 5). At save time the file holds exactly the live values, so a name missing from
    the file is matched to the unclaimed file tensor of the same shape and equal content.
    """
    parameters = dict(module.named_parameters(remove_duplicate=False))
    unclaimed = [key for key in file_tensors if key not in set(names)]
    aligned = []
    for name in names:
        if not name or name in file_tensors:
            aligned.append(name)
            continue
        live = parameters[name].detach().to("cpu")
        match = next((key for key in unclaimed if file_tensors[key].shape == live.shape
                      and torch.equal(file_tensors[key].to(live.dtype), live)), "")
        if match:
            unclaimed.remove(match)
        aligned.append(match)
    return aligned
