"""Boolean-mask gather / scatter and the lower median, fast on CPU.

``values[mask]`` and ``target[mask] = values`` go through torch's generic index kernels, which on CPU run
about 6x slower than NumPy's ``compress`` and a fancy-index put on the mask's flat positions. Codecs do
these on every tensor of a checkpoint, so CPU tensors take the NumPy route (same results, bit for bit);
tensors on another device keep torch's kernels.
"""

from __future__ import annotations

import numpy as np
import torch

# dtypes NumPy holds natively (bfloat16 and the float8 types are not among them)
_NUMPY_DTYPES = {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8,
                 torch.uint8, torch.bool}


def _on_numpy(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES for t in tensors)


def select(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``values[mask]`` for same-shape ``values`` and bool ``mask``: (count,) in the flat order of ``values``."""
    if not _on_numpy(values, mask) or values.shape != mask.shape:
        return values[mask]
    return torch.from_numpy(np.compress(mask.detach().numpy().reshape(-1), values.detach().numpy().reshape(-1)))


def scatter(target: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> None:
    """``target[mask] = values`` in place for a 1-D contiguous ``target``, bool ``mask`` and (count,) values."""
    if not _on_numpy(target, mask, values) or target.dim() != 1 or mask.shape != target.shape \
            or not target.is_contiguous():
        target[mask] = values
        return
    positions = np.flatnonzero(mask.numpy())
    if positions.size != values.numel():
        raise ValueError(f"scatter: mask selects {positions.size} positions but {values.numel()} values were given")
    target.numpy()[positions] = values.detach().numpy().reshape(-1)  # NumPy casts to the target's dtype


def lower_median(values: torch.Tensor) -> float:
    """The lower median, as ``torch.median`` defines it (element (n-1)//2 of the sorted values); 0 when empty.

    NumPy's introselect (``partition``) finds it about 10x faster than ``torch.median`` on CPU.
    """
    if values.numel() == 0:
        return 0.0
    if not _on_numpy(values):
        return float(values.median())
    flat = values.detach().numpy().reshape(-1)
    middle = (flat.size - 1) // 2
    return float(np.partition(flat, middle)[middle])
