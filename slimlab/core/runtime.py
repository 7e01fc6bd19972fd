"""Seeding and device selection, the same way in every recipe."""

from __future__ import annotations

import random

import numpy as np
import torch

from slimlab.core.errors import SlimlabError


def seed_all(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, then Apple MPS, else CPU; other names are checked, not trusted."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SlimlabError(f"device '{name}' is not a device name (try auto, cpu, cuda, cuda:1)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SlimlabError(f"device '{name}' was asked for but CUDA is not available here; use --device auto or cpu")
    return device
