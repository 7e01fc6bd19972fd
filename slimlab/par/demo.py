"""``slimlab demo`` section: train the weighted-BCE baseline and AAP on synthetic pedestrians, then predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import torch

from slimlab.core.config import load_config
from slimlab.par.checkpoint import load_trained_model
from slimlab.par.config import ParTrainConfig
from slimlab.par.data import read_image, to_model_input
from slimlab.par.recipes.train import main as train
from slimlab.par.synthetic import make_synthetic_pedestrians


def run_demo(out_dir: Path, quick: bool) -> str:
    size = ["train_count=600", "test_count=200", "epochs=5", "width=8", "learning_rate=0.005"] if quick else \
        ["train_count=2000", "test_count=1000", "epochs=8", "width=16", "learning_rate=0.002"]
    rows = ["| head | mA | accuracy | precision | recall | F1 | weak-attribute mA |", "|---|---|---|---|---|---|---|"]
    for head in ("global", "aap"):
        shutil.rmtree(out_dir / head, ignore_errors=True)  # this demo's own run from an earlier demo: trained anew
        cfg = load_config(ParTrainConfig, None, size + [f"head={head}", f"out_dir={out_dir / head}"])
        result = train(cfg)
        rows.append(f"| {'weighted-BCE baseline (global head)' if head == 'global' else 'attribute aware pooling'} | "
                    + " | ".join(f"{100 * result[k]:.1f}" for k in ("mA", "accuracy", "precision", "recall", "f1", "weak_mA"))
                    + " |")
    person = make_synthetic_pedestrians(1, 1, seed=123).test_images[0]
    image_path = out_dir / "person.png"
    cv2.imwrite(str(image_path), cv2.resize(person[:, :, ::-1], (96, 192), interpolation=cv2.INTER_NEAREST))
    model, cfg, names = load_trained_model(out_dir / "aap" / "checkpoint.pt")
    with torch.no_grad():
        probabilities = model(to_model_input(read_image(image_path, cfg.image_height, cfg.image_width)[None]))["probabilities"][0]
    present = ", ".join(f"{name} {float(p):.2f}" for name, p in sorted(zip(names, probabilities), key=lambda x: -x[1])
                        if p >= 0.5) or "none above 0.5"
    return ("Synthetic pedestrians (64x32, correlated attributes, some weak or occluded), identity-disjoint test split"
            f" ({'quick settings' if quick else 'demo settings; the benchmark trains on 8,000'}: `{' '.join(size)}`).\n\n" + "\n".join(rows)
            + f"\n\n`slimlab par predict {image_path.name} --checkpoint aap/checkpoint.pt`: {present}.\n\n"
            "Full comparison with controls and seeds: `python benchmarks/par.py` -> docs/benchmarks/par.md.")
