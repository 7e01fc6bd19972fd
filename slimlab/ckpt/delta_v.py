"""``delta_v``: log v coded against the parent's decoded v where the parent kept one. The encoder and decoder both
go through these two functions, so the delta base and the float32 arithmetic are identical on both sides."""

from __future__ import annotations

import torch


def parent_log_second_moment(lookup, name: str, keep: torch.Tensor) -> torch.Tensor | None:
    """(kept,) log of the parent's decoded v at the kept positions, NaN where the parent has no v there;
    None without a parent v. ``lookup(name)`` gives the parent's decoded v; encoder and decoder both go
    through here, so the delta base is bit-identical on both sides."""
    parent = lookup(name) if lookup is not None else None
    if parent is None or parent.numel() != keep.numel():
        return None
    kept = parent.reshape(-1).float()[keep]
    return torch.where(kept > 0, torch.log(kept.clamp_min(torch.finfo(torch.float32).tiny)), float("nan"))


def merge_log_second_moment(parent_log_v: torch.Tensor | None, absolute: torch.Tensor,
                            delta: torch.Tensor | None) -> torch.Tensor:
    """(kept,) log v: coded directly where the parent has no v, parent + delta where it has (encoder and
    decoder both call this, so the float32 operations are the same on both sides)."""
    if parent_log_v is None:
        return absolute
    known = ~torch.isnan(parent_log_v)
    log_v = torch.empty(parent_log_v.numel())
    log_v[~known], log_v[known] = absolute, parent_log_v[known] + delta
    return log_v
