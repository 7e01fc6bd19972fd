"""Reading ``torch.save`` files safely (tensors and plain containers only) with errors a user can act on.

torch's own message for a refused or foreign file is a page of advice, including re-running with
``weights_only=False``, which would execute code from the file; slimlab says in one line what is wrong instead.
"""

from __future__ import annotations

import os
import re
import zipfile
from typing import Any

import torch

from slimlab.core.errors import SlimlabError


def load_failure_reason(error: Exception) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` refused a file."""
    text = str(error)
    global_match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if global_match:
        return (f"it holds a pickled Python object ({global_match.group(1)}), which is not loaded because unpickling "
                "can run code; save a state_dict of tensors instead")
    detail = re.search(r"WeightsUnpickler error: \s*(.+)", text)  # torch's own reason inside its advice
    first_line = detail.group(1) if detail else text.strip().splitlines()[0] if text.strip() else ""
    return f"not a torch.save file, or a damaged one: {type(error).__name__}" + (f": {first_line[:160]}" if first_line
                                                                              else "")


def load_torch_file(path: str | os.PathLike, what: str = "torch.save file") -> Any:
    """The object in ``path``, loaded weights-only on the CPU (memory-mapped when the file allows: the zip format).

    Unreadable files raise their OSError (the CLI names the file); any other failure is a SlimlabError saying
    ``path`` is not a readable ``what``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except OSError:
        raise
    except Exception as error:  # truncated zip, foreign format, pickled classes: torch raises many types
        raise SlimlabError(f"{path}: not a readable {what} ({load_failure_reason(error)})") from error
