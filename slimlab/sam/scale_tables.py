"""Saved W8A8 scale tables (``scales.json``): a fake-quantized model is rebuilt from its float weights and the
table, with no pickled modules. ``quantize.calibrate`` writes the table; this module reads and checks it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_text, read_json
from slimlab.sam.quantize import QuantizedLayer, prepare

TWIN_KINDS = ("softmax", "gelu")  # kinds prepare() gives only with twin=True (plain "uniform" otherwise)


def table_twin(table: dict) -> bool:
    """Whether a table was calibrated with twin-uniform quantizers, read from its entries' ``kind``: twin tables
    hold softmax / GELU kinds, plain ones none (every SAM layout has attention, so a twin table always has one)."""
    return any(entry.get("kind") in TWIN_KINDS for entry in table.values())


def apply_scale_table(model: nn.Module, table: dict, twin: bool | None = None,
                      where: str = "scale table") -> nn.Module:
    """Rebuild a fake-quantized model from a float model and a saved scale table (no pickled modules).

    ``twin`` defaults to what the table was calibrated with (read from its kinds); passing the other value, or a
    table whose kinds or bits do not match the quantizers ``prepare`` builds, is an error naming ``where``:
    the scales of a plain quantizer mean something else in a twin one, so loading them would change the model.
    """
    if not table:
        raise SlimlabError(f"{where}: the scale table is empty")
    for name, entry in table.items():
        if not isinstance(entry, dict) or not {"kind", "bits", "scale"} <= set(entry):
            raise SlimlabError(f"{where}: entry '{name}' needs 'kind', 'bits' and 'scale' fields")
    bits = next(iter(table.values()))["bits"]
    calibrated_twin = table_twin(table)
    if twin is not None and twin != calibrated_twin:
        raise SlimlabError(f"{where}: the table was calibrated {'with' if calibrated_twin else 'without'} twin-uniform "
                           f"quantizers (its kinds say so) but twin={twin} was asked for; drop the twin setting or "
                           "calibrate again")
    quantized, layers = prepare(model, bits, calibrated_twin)
    missing = sorted(set(layers) - set(table))
    if missing:
        raise SlimlabError(f"{where}: lacks {len(missing)} quantizer(s): {', '.join(missing[:10])}")
    for name, layer in layers.items():
        entry = table[name]
        quantizer = layer.input_quantizer if isinstance(layer, QuantizedLayer) else layer
        if entry.get("kind") != quantizer.kind or entry.get("bits") != bits:
            raise SlimlabError(f"{where}: '{name}' is kind {entry.get('kind')!r} with {entry.get('bits')} bits but "
                               f"this model needs {quantizer.kind!r} with {bits} bits (a table from another model, "
                               "or edited by hand)")
        if isinstance(layer, QuantizedLayer):
            layer.weight_ratio = entry["weight_ratio"]
            layer.quantize_weight()
        if entry["scale"] is not None:
            scale = torch.tensor(entry["scale"])
            quantizer.scale = scale.reshape(()) if scale.numel() == 1 else scale
        if "zero_point" in entry:
            quantizer.zero_point = torch.tensor(entry["zero_point"])
        if "fine_scale" in entry:
            quantizer.fine_scale = torch.tensor(entry["fine_scale"])
    return quantized


def save_scale_table(table: dict, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(table, indent=1))


def load_scale_table(model: nn.Module, path: str | Path, twin: bool | None = None) -> nn.Module:
    """``apply_scale_table`` on a ``scales.json`` written by ``save_scale_table``; errors name the file."""
    table = read_json(path, dict, "a scale table (a JSON object of quantizer name -> scales)")
    return apply_scale_table(model, table, twin, str(path))
