"""A run directory: the resolved config, metrics as JSONL, and plots drawn from those metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from slimlab.core.config import config_to_dict
from slimlab.core.distributed import is_main_process
from slimlab.core.io import atomic_write_text
from slimlab.core.plots import line_plot


class RunDirectory:
    """Holds ``config.yaml``, ``metrics.jsonl`` and ``plots/``; only rank 0 writes."""

    def __init__(self, path: str | Path, config: Any | None = None):
        """``config`` is written at once; a recipe that first checks a resume state passes none here and calls
        ``write_config`` after the check, so a refused run leaves a finished run's config as it was."""
        self.path = Path(path)
        self.writer = is_main_process()
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.path / "metrics.jsonl"
        if config is not None:
            self.write_config(config)

    def write_config(self, config: Any) -> None:
        if self.writer:
            atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))

    def log(self, **metrics: Any) -> None:
        """Append one JSON line (numbers become plain floats; NaN is kept as null so the file stays valid JSON)."""
        if not self.writer:
            return
        row = {key: _plain(value) for key, value in metrics.items()}
        with open(self.metrics_path, "a") as stream:
            stream.write(json.dumps(row) + "\n")

    def truncate(self, key: str, first_value: float) -> None:
        """Drop logged rows whose ``key`` is ``first_value`` or later (rows without it stay): a resumed run logs
        them again, and a run started afresh (``first_value`` 0) begins with an empty log."""
        if not self.writer or not self.metrics_path.exists():
            return
        kept = [row for row in self.read_metrics() if row.get(key, -math.inf) < first_value]
        atomic_write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def plot(self, x_key: str, y_keys: list[str], name: str, title: str | None = None, log_y: bool = False) -> Path | None:
        """Draw ``y_keys`` against ``x_key`` from the logged metrics into ``plots/<name>.png``."""
        if not self.writer:
            return None
        rows = self.read_metrics()
        series = {}
        for key in y_keys:
            points = [(row[x_key], row[key]) for row in rows if row.get(key) is not None and x_key in row]
            if points:
                series[key] = ([x for x, _ in points], [y for _, y in points])
        if not series:
            return None
        return line_plot(series, self.path / "plots" / f"{name}.png", title or name, x_key, ", ".join(y_keys), log_y)


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
