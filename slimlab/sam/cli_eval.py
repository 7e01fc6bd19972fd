"""``slimlab sam eval``: prompted mIoU of a checkpoint against ground-truth masks, printed as JSON.

Kept apart from ``cli.py`` (segment, distill, quantize, export-onnx) only so that neither file grows past a
screenful of commands; the protocol itself is ``evaluate.prompted_ious``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from slimlab.core.errors import SlimlabError
from slimlab.core.runtime import select_device

DEFAULT_TEST_IMAGES = 50  # as `slimlab sam distill --test-images`, so the two commands report the same set


def eval_command(argv: list[str]) -> int:
    from slimlab.sam.build import load_model
    from slimlab.sam.data import MIN_MASK_PIXELS, FolderDataset
    from slimlab.sam.evaluate import prompted_ious
    from slimlab.sam.shapes import ShapesDataset

    parser = argparse.ArgumentParser(prog="slimlab sam eval", description="prompted mIoU against ground-truth "
                                     "masks (SAM protocol: multimask output, keep the highest predicted IoU), at "
                                     "the model's input size; prints JSON")
    parser.add_argument("--checkpoint", required=True, help="official SAM/TinySAM .pth or one written by slimlab")
    parser.add_argument("--model", help="layout name when the file does not say (vit_b, vit_t, shapes_student, ...)")
    parser.add_argument("--images", help="folder of images; masks from --annotations or SA-1B <image>.json files "
                        "(default: the built-in ShapesSA test split)")
    parser.add_argument("--annotations", help="COCO instances JSON for --images")
    parser.add_argument("--test-images", type=int, help=f"ShapesSA test images (default {DEFAULT_TEST_IMAGES})")
    parser.add_argument("--annotate-background", action="store_true",
                        help="ShapesSA with its background regions as masks too (as `sam distill --annotate-background`)")
    parser.add_argument("--prompt", choices=["point", "box"], default="point",
                        help="point: the mask's distance-transform centre; box: its tight box")
    parser.add_argument("--clicks", type=int, default=1,
                        help="--prompt point: 1 + corrective clicks at the centre of the largest error; above 1, "
                             "the mIoU after each click is printed too (miou_by_click)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.annotations and not args.images:
        raise SlimlabError("--annotations belongs to --images; give the image folder too")
    if args.images and (args.test_images is not None or args.annotate_background):
        raise SlimlabError("--test-images and --annotate-background set up the built-in ShapesSA set; they do not "
                           "apply to --images")
    test_images = DEFAULT_TEST_IMAGES if args.test_images is None else args.test_images
    if test_images < 1 or args.clicks < 1:
        raise SlimlabError(f"--test-images {test_images} / --clicks {args.clicks}: each must be at least 1")
    if args.prompt == "box" and args.clicks != 1:
        raise SlimlabError("--clicks adds corrective points; it applies to --prompt point only")
    model = load_model(args.checkpoint, args.model).to(select_device(args.device))
    if args.images:
        dataset, data = FolderDataset(args.images, model.image_size, args.annotations), str(args.images)
    else:  # generated at the model's input size: prompted_ious compares masks at that size
        dataset = ShapesDataset(test_images, "test", model.image_size, args.annotate_background)
        data = f"ShapesSA test ({test_images} images{', annotated background' if args.annotate_background else ''})"
    result = prompted_ious(model, dataset, args.prompt, args.clicks)
    ious = result["iou"]
    if len(ious) == 0:
        hint = (f"the annotated masks are all empty or under {MIN_MASK_PIXELS} pixels at the model's input size"
                if args.annotations else "give --annotations, or SA-1B <image>.json files next to the images")
        raise SlimlabError(f"{data}: no ground-truth masks to evaluate against ({hint})")
    by_tag: dict[str, list[float]] = {}
    for iou, tags in zip(ious.tolist(), result["tags"]):
        for tag in tags:
            by_tag.setdefault(tag, []).append(iou)
    summary = {"checkpoint": str(args.checkpoint), "model": model.spec.get("name"), "data": data,
               "images": len(dataset), "instances": int(len(ious)), "prompt": args.prompt, "clicks": args.clicks,
               "miou": float(np.mean(ious)),
               "miou_by_tag": {tag: float(np.mean(values)) for tag, values in sorted(by_tag.items())}}
    if args.clicks > 1:  # the whole click curve, not just its end
        summary["miou_by_click"] = [float(ious.mean()) for ious in result["iou_by_click"]]
    if args.images:  # annotated masks too small to prompt at the model's input size are not scored; say how many
        summary[f"instances_skipped_under_{MIN_MASK_PIXELS}_pixels"] = sum(dataset.skipped_small_masks.values())
    print(json.dumps(summary, indent=1))
    return 0
