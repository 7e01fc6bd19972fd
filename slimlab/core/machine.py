"""One line naming the machine a benchmark ran on (CPU model, threads, torch and Python versions)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: keep platform's answer
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {torch.get_num_threads()} torch threads{gpu}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")
