"""``slimlab gan eval``: score a generator on the test split of a paired or unpaired folder.

PSNR / SSIM to the targets, KID / FID on the fixed random-conv features (``slimlab.gan.evaluate``), PSNR to a
teacher's outputs when ``--teacher`` is given. An unpaired test split is aligned (testA/ and testB/ hold the same
file names, as the built-in tasks write them) or not (a CycleGAN dataset's testB/ is just more domain-B images):
then only the distribution metrics KID / FID are reported. For label -> image data (A images colour-coded in the
built-in label palette, e.g. ``builtin:labels2texture``), ``--fcn`` adds the FCN-style downstream score: a segmenter
trained on the folder's real training targets reads the generated test images, and KID / FID are also taken on
its trunk's features (``seg_kid``, ``seg_fid``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.image_tasks import LABEL_CLASSES, LABEL_PALETTE
from slimlab.core.images import list_images, to_uint8
from slimlab.core.io import atomic_write_text, refuse_output_over_inputs
from slimlab.core.runtime import select_device


def eval_command(argv: list[str]) -> int:
    from slimlab.gan.checkpoint import load_generator
    from slimlab.gan.cli import _architecture_flags, _spec
    from slimlab.gan.data import resolve_data
    from slimlab.gan.evaluate import default_features, generate, load_test_split, quality

    parser = argparse.ArgumentParser(prog="slimlab gan eval", description="score a generator on a test split")
    parser.add_argument("--checkpoint", required=True, help="generator file (G.pt, or G_AB.pt for unpaired)")
    parser.add_argument("--data", required=True, help="paired folder with test/A + test/B, unpaired folder with "
                        "testA/ + testB/ (same file names: aligned targets; else KID / FID only), or builtin:<task>")
    parser.add_argument("--mode", choices=["paired", "unpaired"], help="default: unpaired when DATA has testA/")
    parser.add_argument("--teacher", help="teacher generator file: also report PSNR to its outputs")
    parser.add_argument("--fcn", action="store_true", help="label -> image data: FCN-style segmenter scores")
    parser.add_argument("--segmenter-steps", type=int, default=800)
    parser.add_argument("--out", help="write the scores to this JSON file")
    parser.add_argument("--whole-folder", action="store_true", help="paired DATA without a test/ split: score its "
                        "pairs (A/ + B/ or A|B images) themselves, knowing they may be training pairs")
    parser.add_argument("--device", default="auto")
    _architecture_flags(parser)
    arguments = parser.parse_args(argv)
    root = resolve_data(arguments.data)
    if not root.is_dir():
        raise SlimlabError(f"{root}: no such data folder")
    if arguments.out:  # before any work: the scores must not replace a checkpoint or land in the data
        refuse_output_over_inputs(arguments.out, (arguments.checkpoint, arguments.teacher, root))
    mode = arguments.mode or ("unpaired" if (root / "testA").is_dir() else "paired")
    if arguments.whole_folder and mode != "paired":
        raise SlimlabError("--whole-folder applies to paired data; unpaired data is scored on testA/ + testB/")
    if mode == "paired" and not (root / "test").is_dir() and not arguments.whole_folder:
        # the folder itself is usually what the generator was trained on: scores on it would look too good
        only_train = " (the pairs here are under train/: training pairs)" if (root / "train").is_dir() else ""
        raise SlimlabError(f"{root}: no test/ split (test/A + test/B){only_train}; to score the pairs in this folder "
                           "itself (e.g. a separate test folder, not the training pairs) pass --whole-folder")
    device = select_device(arguments.device)
    generator, spec = load_generator(arguments.checkpoint, _spec(arguments))
    generators = [(arguments.checkpoint, spec)]
    if arguments.teacher:
        teacher, teacher_spec = load_generator(arguments.teacher)
        generators.append((arguments.teacher, teacher_spec))
    inputs, targets = load_test_split(root, mode, generators=tuple(generators))  # (N, 3, H, W) each, in [-1, 1]
    aligned = mode == "paired" or [f.name for f in list_images(root / "testA")] == [
        f.name for f in list_images(root / "testB")]
    if aligned and len(inputs) < 4:  # KID keeps each output away from its own target: two halves of >= 2 images
        raise SlimlabError(f"{root}: scoring aligned targets needs at least 4 test images, found {len(inputs)}")
    if aligned and targets.shape != inputs.shape:  # paired folders check this per pair; aligned testA/testB not
        raise SlimlabError(f"{root}: the test targets are {targets.shape[-1]}x{targets.shape[-2]} pixels but the "
                           f"inputs {inputs.shape[-1]}x{inputs.shape[-2]}; aligned targets need the inputs' size")
    outputs = generate(generator.to(device), inputs)
    teacher_outputs = generate(teacher.to(device), inputs) if arguments.teacher else None
    # aligned targets: PSNR / SSIM too; unaligned domain-B images: distances between distributions only
    scores = quality(outputs, targets, default_features(), teacher_outputs, aligned)
    if arguments.fcn:
        scores |= fcn_on_folder(root, mode, inputs, targets, outputs, arguments.segmenter_steps)
    scores = {"images": len(inputs), "mode": mode, "aligned_targets": aligned, **scores}
    for name, value in scores.items():
        print(f"{name:<20} {value:.4f}" if isinstance(value, float) else f"{name:<20} {value}")
    if arguments.out:
        atomic_write_text(arguments.out, json.dumps({"checkpoint": str(arguments.checkpoint), "data": str(root),
                                                     "scores": scores}, indent=2))
        print(f"wrote {arguments.out}")
    return 0


def fcn_on_folder(root: Path, mode: str, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor,
                  steps: int) -> dict[str, float]:
    """FCN-style scores of ``outputs``; the segmenter learns from the folder's training pairs (seed 0)."""
    from slimlab.gan.evaluate import load_test_split
    from slimlab.gan.fcn_score import label_task_scorer

    if mode != "paired":
        raise SlimlabError(f"{root}: --fcn needs paired label maps (train/A + train/B), not an unpaired folder")
    missing = [split for split in ("train", "test") if not (root / split).is_dir()]
    if missing:  # without a separate train split the segmenter would learn the very images it then scores
        raise SlimlabError(f"{root}: --fcn needs train/ and test/ splits (the segmenter learns from train/ only); "
                           f"missing: {', '.join(missing)}")
    train_inputs, train_targets = load_test_split(root, "paired", split="train")
    for name, images in (("train", train_inputs), ("test", inputs)):
        require_label_images(images, root / name / "A")
    score, real = label_task_scorer(train_inputs, train_targets, inputs, targets, len(LABEL_CLASSES), steps=steps)
    return score(outputs) | {f"{name}_real": value for name, value in real.items()}


def require_label_images(images: torch.Tensor, folder: Path) -> None:
    """Refuse inputs that are not colour-coded label maps: every pixel must be a ``LABEL_PALETTE`` colour."""
    palette = {tuple(colour) for colour in LABEL_PALETTE.tolist()}
    for index, image in enumerate(images):
        colours = {tuple(colour) for colour in np.unique(to_uint8(image).reshape(-1, 3), axis=0).tolist()}
        if not colours <= palette:
            raise SlimlabError(f"{folder}: image {index} (sorted by name) is not a label map in the built-in palette "
                               f"({len(colours - palette)} other colours); --fcn scores label -> image data only")
