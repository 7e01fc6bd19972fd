"""``slimlab par train | eval | predict``.

Config fields are options: ``slimlab par train --head aap --dataset peta --data-root PETA.mat epochs=30``
(``--name value`` and ``name=value`` are the same thing; ``--config recipe.yaml`` loads a file first).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_text, refuse_output_over_inputs
from slimlab.core.runtime import select_device
from slimlab.par.config import ParTrainConfig

HEADLINE = ("mA", "accuracy", "precision", "recall", "f1")
# What ``par eval`` may change: which data it reads. The model's fields come from the checkpoint, so an override of
# one (head=, width=, ...) would be reported as if it had been evaluated.
EVAL_FIELDS = ("dataset", "data_root", "images_root", "partition", "variant", "train_count", "test_count",
               "identity_disjoint", "data_seed", "batch_size")


def train_command(argv: list[str]) -> int:
    if any(token in ("-h", "--help") for token in argv):  # anywhere, like argparse: "--epochs 1 --help" too
        print(_help("slimlab par train [--config FILE] [--field value | field=value ...]"))
        return 0
    config_path, overrides = _overrides(argv)
    cfg = load_config(ParTrainConfig, config_path, overrides)
    from slimlab.par.recipes.train import main

    result = main(cfg)
    if "mA" in result:
        print(_format_metrics(result))
        print(f"checkpoint: {Path(cfg.out_dir) / 'checkpoint.pt'}")
    return 0


def eval_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab par eval", description="Evaluate a PAR checkpoint on its test split "
                                     "(or another dataset given by field=value overrides, e.g. data_root=...).")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="also write the metrics here as JSON")
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", help="dataset fields to change, e.g. variant=independent")
    arguments = parser.parse_intermixed_args(argv)
    from slimlab.par.checkpoint import load_trained_model
    from slimlab.par.data import check_splits, image_folders, load_attribute_data
    from slimlab.par.evaluate import evaluate_model

    fixed = [key for key in (item.partition("=")[0].strip() for item in arguments.overrides)
             if key in ParTrainConfig.__dataclass_fields__ and key not in EVAL_FIELDS]
    if fixed:
        raise SlimlabError(f"'{fixed[0]}' cannot be changed by par eval: the model and how it was trained come from "
                           f"{arguments.checkpoint}; eval takes only {', '.join(EVAL_FIELDS)} (and --device)")
    device = select_device(arguments.device)
    model, cfg, names = load_trained_model(arguments.checkpoint, device)
    if arguments.overrides:
        values = {k: v for k, v in cfg.__dict__.items()}
        cfg = load_config(ParTrainConfig, None, arguments.overrides, **values)
    if arguments.out:
        refuse_output_over_inputs(arguments.out, [arguments.checkpoint, cfg.data_root, cfg.images_root])
    data = load_attribute_data(cfg)
    if arguments.out:
        refuse_output_over_inputs(arguments.out, image_folders(data))
        if Path(arguments.out).is_dir():
            raise SlimlabError(f"{arguments.out}: is a folder; --out is the JSON file to write")
    check_splits(data, cfg, ("test",))
    if tuple(data.attribute_names) != tuple(names):
        raise SlimlabError(f"{arguments.checkpoint}: trained on {len(names)} attributes ({', '.join(names[:4])}, ...) "
                           f"but the dataset has {len(data.attribute_names)} ({', '.join(data.attribute_names[:4])}, ...)")
    metrics = evaluate_model(model, data.test, device, cfg.batch_size, data.weak_attributes)
    print(_format_metrics(metrics))
    for name, value in zip(names, metrics["per_attribute_mA"]):
        print(f"  {name:<24} mA {100 * value:6.2f}")
    if arguments.out:
        atomic_write_text(arguments.out, json.dumps({**metrics, "attribute_names": list(names)}, indent=2))
    return 0


def predict_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slimlab par predict", description="Print each image's attributes with "
                                     "probabilities (present = probability >= threshold).")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--all", action="store_true", help="also list attributes below the threshold")
    parser.add_argument("--json", help="write {image: {attribute: probability}} here")
    parser.add_argument("--device", default="auto")
    arguments = parser.parse_args(argv)
    from slimlab.par.checkpoint import load_trained_model
    from slimlab.par.data import read_image, to_model_input

    if arguments.json:
        refuse_output_over_inputs(arguments.json, [arguments.checkpoint, *arguments.images])
        if Path(arguments.json).is_dir():
            raise SlimlabError(f"{arguments.json}: is a folder; --json is the file to write")
    device = select_device(arguments.device)
    model, cfg, names = load_trained_model(arguments.checkpoint, device)
    images = torch.stack([read_image(path, cfg.image_height, cfg.image_width) for path in arguments.images])
    with torch.no_grad():
        probabilities = model(to_model_input(images.to(device)))["probabilities"].float().cpu()  # (N, A)
    report = {}
    for path, row in zip(arguments.images, probabilities):
        report[path] = {name: round(float(p), 4) for name, p in zip(names, row)}
        print(path)
        for name, p in sorted(report[path].items(), key=lambda item: -item[1]):
            if p >= arguments.threshold or arguments.all:
                print(f"  {'+' if p >= arguments.threshold else ' '} {name:<24} {p:.3f}")
    if arguments.json:
        atomic_write_text(arguments.json, json.dumps(report, indent=2))
    return 0


def _overrides(argv: list[str]) -> tuple[str | None, list[str]]:
    """Turn ``--field value`` / ``--field=value`` / ``field=value`` into config overrides."""
    config_path, overrides, index = None, [], 0
    while index < len(argv):
        token = argv[index]
        if token.startswith("--"):
            key, _, value = token[2:].partition("=")
            if not value:
                if index + 1 >= len(argv):
                    raise SlimlabError(f"option '{token}' needs a value")
                index, value = index + 1, argv[index + 1]
            key = key.replace("-", "_")
            if key == "config":
                config_path = value
            else:
                overrides.append(f"{key}={value}")
        elif "=" in token:
            overrides.append(token)
        else:
            raise SlimlabError(f"unexpected argument '{token}'; use --field value or field=value")
        index += 1
    return config_path, overrides


def _format_metrics(metrics: dict) -> str:
    text = "  ".join(f"{key} {100 * metrics[key]:.2f}" for key in HEADLINE)
    if "weak_mA" in metrics:
        text += f"  weak-attribute mA {100 * metrics['weak_mA']:.2f}"
    return text


def _help(usage: str) -> str:
    import dataclasses
    lines = [usage, "", "fields (defaults):"]
    lines += [f"  --{f.name.replace('_', '-'):<22} {f.default!r}" for f in dataclasses.fields(ParTrainConfig)]
    return "\n".join(lines)
