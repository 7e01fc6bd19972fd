"""Progress bars for long loops (tqdm on stderr; silent off rank 0 and when SLIMLAB_QUIET=1)."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

from slimlab.core.distributed import rank

T = TypeVar("T")


def progress(iterable: Iterable[T], description: str = "", total: int | None = None, leave: bool = False) -> Iterable[T]:
    disabled = rank() != 0 or os.environ.get("SLIMLAB_QUIET") == "1"
    return tqdm(iterable, desc=description, total=total, leave=leave, disable=disabled, dynamic_ncols=True)
