"""Headless PNG plots (matplotlib Agg backend) written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from slimlab.core.io import atomic_write_bytes  # noqa: E402


def save_figure(figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str,
              x_label: str, y_label: str, log_y: bool = False) -> Path:
    """One line per named series of (x values, y values)."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for name, (xs, ys) in series.items():
        axes.plot(list(xs), list(ys), label=name, linewidth=1.4)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if log_y:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=8)
    return save_figure(figure, path)


def bar_plot(values: Mapping[str, float], path: str | Path, title: str, y_label: str, log_y: bool = False,
             errors: Mapping[str, float] | None = None) -> Path:
    figure, axes = plt.subplots(figsize=(max(4.0, 0.9 * len(values) + 2), 4.0))
    names = list(values)
    axes.bar(names, [values[name] for name in names],
             yerr=[errors.get(name, 0.0) for name in names] if errors else None, capsize=3, color="#4C72B0")
    axes.set_title(title)
    axes.set_ylabel(y_label)
    if log_y:
        axes.set_yscale("log")
    axes.tick_params(axis="x", rotation=30)
    axes.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)
