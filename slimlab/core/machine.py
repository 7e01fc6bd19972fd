"""What a benchmark ran on: CPU model, core and thread counts, GPU, torch and Python versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine_facts() -> dict:
    """The facts as a dict (benchmarks store it in their JSON)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: keep platform's answer
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "python": platform.python_version()}


def describe_machine() -> str:
    """The same facts as one line for a report."""
    facts = machine_facts()
    gpu = f", GPU {facts['gpu']}" if facts["gpu"] else ""
    return (f"{facts['cpu']}, {facts['torch_threads']} torch threads{gpu}, torch {facts['torch']}, "
            f"Python {facts['python']}")
