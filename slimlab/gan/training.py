"""Pieces both recipes share: weight init, Adam with linear decay, and a resumable training state."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimlab.core.config import check_same_settings, config_to_dict
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes
from slimlab.core.torch_files import load_torch_file


def init_weights(network: nn.Module, generator: torch.Generator) -> nn.Module:
    """pix2pix/CycleGAN init: conv weights ~ N(0, 0.02), biases 0, drawn from ``generator`` (reproducible)."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
                if module.bias is not None:
                    module.bias.zero_()
    return network


def adam(parameters, lr: float, beta1: float) -> torch.optim.Adam:
    return torch.optim.Adam(list(parameters), lr=lr, betas=(beta1, 0.999))


def linear_decay_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Constant for the first half, then linearly to 0 at the last step (the CycleGAN schedule, in steps)."""
    half = total_steps // 2
    if step < half:
        return base_lr
    return base_lr * (1.0 - (step - half) / max(1, total_steps - half))


def set_lr(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = lr


def seed_step(seed: int, step: int) -> None:
    """Seed the global RNGs per step (dropout, replay choices) so a resumed run repeats the same draws."""
    value = (seed * 1_000_003 + step) % (2**31)
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value)


def save_state(path: Path, step: int, networks: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               identity: dict) -> None:
    """Everything needed to continue at ``step``: weights, optimizer moments and the run's identity."""
    payload = {"step": step, "identity": identity,
               "networks": {name: net.state_dict() for name, net in networks.items()},
               "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path, networks: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               identity: dict, added_fields: dict | None = None) -> int:
    """Restore a state written by ``save_state``; returns the step to continue from. ``added_fields``: config
    fields newer than some stored states, with the value that reproduces how those states were trained."""
    payload = load_torch_file(path, "training state to resume from")
    check_same_settings(path, {**(added_fields or {}), **(payload.get("identity") or {})}, identity)
    for name, net in networks.items():
        net.load_state_dict(payload["networks"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(payload["optimizers"][name])
    return int(payload["step"])


def resume_point(cfg, run, networks: dict, optimizers: dict) -> tuple[int, dict]:
    """(first step to run, run identity). Continues from ``out_dir/state.pt`` when ``cfg.resume`` and it exists."""
    identity = run_identity(cfg)
    state = Path(cfg.out_dir) / "state.pt"
    if not (cfg.resume and state.exists()):
        run.truncate("step", 0)  # a run started afresh in a used folder does not append to the old log
        return 0, identity
    start = load_state(state, networks, optimizers, identity, added_fields(cfg))
    if start > cfg.steps:  # training cannot be undone: going on would label the longer run's networks with steps
        raise SlimlabError(f"{state}: this run was already trained for {start} steps, more than steps={cfg.steps}; "
                           f"nothing was changed. Pass steps={start} to keep it as it is, more to continue it, or "
                           "another --out for a new run")
    run.truncate("step", start)
    return start, identity


def run_identity(cfg) -> dict:
    """The config without the fields a resumed run may change (length, logging, device)."""
    return {k: v for k, v in config_to_dict(cfg).items()
            if k not in ("steps", "log_every", "checkpoint_every", "resume", "device", "out_dir")}


def added_fields(cfg) -> dict:
    """The config class's ``ADDED_FIELDS``: fields added after runs were stored, each at the value those runs had
    (so an older state still resumes, and still counts as finished, under the settings it was trained with)."""
    return dict(getattr(type(cfg), "ADDED_FIELDS", {}))


def finished_run(cfg) -> bool:
    """True when ``out_dir/state.pt`` holds a run of this identity trained to exactly ``cfg.steps``: resuming it
    trains nothing and rewrites the same networks (training is seeded per step)."""
    state = Path(cfg.out_dir) / "state.pt"
    if not state.exists():
        return False
    try:
        payload = torch.load(state, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable state is not a finished run; training from scratch replaces it
        return False
    stored = {**added_fields(cfg), **(payload.get("identity") or {})}
    return payload.get("step") == cfg.steps and stored == run_identity(cfg)


def all_finite(values: dict[str, float], where: str) -> None:
    bad = [name for name, value in values.items() if not np.isfinite(value)]
    if bad:
        raise SlimlabError(f"{where}: loss term(s) {', '.join(bad)} became non-finite; lower lr or check the data")
