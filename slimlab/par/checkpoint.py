"""PAR checkpoints: weights, optimizer and schedule state, plus everything needed to rebuild the model alone
(config, attribute names, branch map), so ``slimlab par eval`` and ``predict`` need only the file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from slimlab.core.config import check_same_settings, config_to_dict, load_config
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes
from slimlab.core.torch_files import load_torch_file
from slimlab.par.config import ParTrainConfig

FORMAT = "slimlab-par-1"
# Fields a resumed run may change: its length, where and how fast it runs, and the resume switches themselves.
# Everything else (data, head, widths, learning rate, batch size, seed, ...) shapes the weights, so it must match.
RESUMABLE_FIELDS = ("epochs", "stop_after_epochs", "evaluate_every", "device", "threads", "out_dir", "resume")
# Fields added after checkpoints were already written, with the value those checkpoints were trained with.
ADDED_FIELDS = {"combine": "linear", "receptive_field": "wide"}
# What save_checkpoint has always written and loading reads (weak_attributes is not read back).
REQUIRED_KEYS = ("epoch", "config", "model", "optimizer", "schedule", "attribute_names", "attribute_to_branch")


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer, schedule, epoch: int,
                    cfg: ParTrainConfig, data) -> None:
    state = {"format": FORMAT, "epoch": epoch, "config": config_to_dict(cfg), "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "attribute_names": list(data.attribute_names), "attribute_to_branch": list(data.attribute_to_branch),
             "weak_attributes": list(data.weak_attributes)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SlimlabError(f"{path}: checkpoint not found")
    state = load_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SlimlabError(f"{path}: not a slimlab PAR checkpoint (expected format '{FORMAT}')")
    _check_contents(path, state)
    return state


def _check_contents(path: Path, state: dict[str, Any]) -> None:
    """A file with the right format tag but damaged or edited contents is named here, not in a KeyError."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise SlimlabError(f"{path}: damaged PAR checkpoint, missing {', '.join(map(repr, missing))}")
    names, branches = state["attribute_names"], state["attribute_to_branch"]
    if not isinstance(state["config"], dict) or not isinstance(state["model"], dict):
        raise SlimlabError(f"{path}: damaged PAR checkpoint, 'config' and 'model' must be mappings")
    if not isinstance(state["epoch"], int) or state["epoch"] < 0:
        raise SlimlabError(f"{path}: damaged PAR checkpoint, 'epoch' must be a count of epochs, got {state['epoch']!r}")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SlimlabError(f"{path}: damaged PAR checkpoint, 'attribute_names' must be a list of names")
    if not isinstance(branches, list) or len(branches) != len(names) or any(b not in (0, 1, 2, 3) for b in branches):
        raise SlimlabError(f"{path}: damaged PAR checkpoint, 'attribute_to_branch' must hold a branch 0-3 for each of "
                           f"the {len(names)} attributes, got {branches!r:.80}")


def load_weights(path: str | Path, model: torch.nn.Module, weights: dict[str, Any]) -> None:
    """``model.load_state_dict`` after naming, in one line, what does not fit (torch's error lists every key)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [f"{key} {tuple(getattr(weights[key], 'shape', ()))} (the model has {tuple(value.shape)})"
                for key, value in expected.items()
                if key in weights and getattr(weights[key], "shape", None) != value.shape]
    problems = [f"{label} {len(keys)} tensor(s), e.g. {keys[0]}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape in", reshaped))
                if keys]
    if problems:
        raise SlimlabError(f"{path}: the weights do not fit the model its config describes ({'; '.join(problems)})")
    model.load_state_dict(weights)


def stored_config(state: dict[str, Any]) -> dict[str, Any]:
    """The config a checkpoint was trained with, fields added since then filled with what it actually used."""
    return ADDED_FIELDS | (state.get("config") or {})


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The config of a run (as ``config_to_dict`` writes it) without the fields a resume may change."""
    return {key: value for key, value in config.items() if key not in RESUMABLE_FIELDS}


def check_resumable(path: str | Path, state: dict[str, Any], cfg: ParTrainConfig) -> None:
    """Refuse to continue a checkpoint written with other settings, naming every key that differs."""
    check_same_settings(path, run_identity(stored_config(state)), run_identity(config_to_dict(cfg)))


def load_trained_model(path: str | Path, device: torch.device | str = "cpu"):
    """(model in eval mode, its config, attribute names) from a checkpoint file."""
    from slimlab.par.model import create_model  # local: model imports nothing from here, keeps the graph acyclic

    state = load_checkpoint(path)
    try:
        cfg = load_config(ParTrainConfig, **{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in stored_config(state).items()})
    except SlimlabError as error:
        raise SlimlabError(f"{path}: damaged PAR checkpoint, its stored config is invalid ({error})") from error
    model = create_model(cfg.head, state["attribute_to_branch"], width=cfg.width, blocks_per_stage=cfg.blocks_per_stage,
                         branch_dim=cfg.branch_dim, regions=cfg.regions, mixing=cfg.mixing,
                         partner_weights=cfg.partner_weights, context_detach=cfg.context_detach,
                         partner_init=cfg.partner_init,
                         receptive_field=cfg.receptive_field, combine=cfg.combine)
    load_weights(path, model, state["model"])  # the co-occurrence prior is a buffer, restored with the weights
    return model.to(device).eval(), cfg, tuple(state["attribute_names"])
