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
from slimlab.par.config import ParTrainConfig

FORMAT = "slimlab-par-1"
# Fields a resumed run may change: its length, where and how fast it runs, and the resume switches themselves.
# Everything else (data, head, widths, learning rate, batch size, seed, ...) shapes the weights, so it must match.
RESUMABLE_FIELDS = ("epochs", "stop_after_epochs", "evaluate_every", "device", "threads", "out_dir", "resume")
# Fields added after checkpoints were already written, with the value those checkpoints were trained with.
ADDED_FIELDS = {"combine": "linear", "receptive_field": "wide"}


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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign files raise many types
        raise SlimlabError(f"{path}: cannot read checkpoint ({error})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SlimlabError(f"{path}: not a slimlab PAR checkpoint (expected format '{FORMAT}')")
    return state


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
    cfg = load_config(ParTrainConfig, **{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in stored_config(state).items()})
    model = create_model(cfg.head, state["attribute_to_branch"], width=cfg.width, blocks_per_stage=cfg.blocks_per_stage,
                         branch_dim=cfg.branch_dim, regions=cfg.regions, mixing=cfg.mixing,
                         partner_weights=cfg.partner_weights, context_detach=cfg.context_detach,
                         partner_init=cfg.partner_init,
                         receptive_field=cfg.receptive_field, combine=cfg.combine)
    model.load_state_dict(state["model"])  # the co-occurrence prior is a buffer, restored with the weights
    return model.to(device).eval(), cfg, tuple(state["attribute_names"])
