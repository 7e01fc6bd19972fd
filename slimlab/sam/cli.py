"""``slimlab sam segment | distill | export-onnx`` (``quantize``: cli_quantize.py; ``eval``: cli_eval.py)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import numpy as np

from slimlab.core.config import config_to_dict, load_config
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory, atomic_write_text, check_output_folder
from slimlab.core.runtime import seed_all, select_device


def parse_pairs(values: list[str], width: int, what: str) -> np.ndarray:
    rows = []
    for value in values:
        try:
            numbers = [float(part) for part in value.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != width:
            raise SlimlabError(f"{what} '{value.strip()}': expected {width} comma-separated numbers")
        if not all(np.isfinite(numbers)):
            raise SlimlabError(f"{what} '{value.strip()}': every coordinate must be a finite number")
        rows.append(numbers)
    return np.array(rows, dtype=np.float32).reshape(-1, width)


EVERYTHING_DEFAULTS = {"points_per_side": 32, "pred_iou_thresh": 0.88, "stability_thresh": 0.95, "tau": 8.5,
                       "cover_margin": 0.0}


def check_segment_flags(args: argparse.Namespace) -> None:
    """Refuse flags the chosen mode would silently ignore, then fill in the everything-mode defaults."""
    if args.hierarchical and not args.everything:
        raise SlimlabError("--hierarchical is a variant of --everything; add --everything")
    if args.everything:
        if args.points or args.box is not None or args.labels is not None:
            raise SlimlabError("--everything takes no --points, --labels or --box")
        if args.single_mask:  # the grid's filters choose among SAM's 3 masks per point; one mask would skip that
            raise SlimlabError("--single-mask applies to point / box prompts; everything mode always decodes SAM's "
                               "3 masks per point and keeps those passing --pred-iou-thresh and --stability-thresh")
        for flag, value in (("--tau", args.tau), ("--cover-margin", args.cover_margin)):
            if value is not None and not args.hierarchical:
                raise SlimlabError(f"{flag} is a setting of --hierarchical's covered area; add --hierarchical or "
                                   "drop it")
    else:
        given = [f"--{key.replace('_', '-')}" for key in EVERYTHING_DEFAULTS if getattr(args, key) is not None]
        if given:
            raise SlimlabError(f"{', '.join(given)}: everything-mode settings, unused with prompts; add --everything "
                               "or drop them")
        if args.points == [] and args.box is None:
            raise SlimlabError("no prompt: give --points x,y ..., --box x0,y0,x1,y1 or --everything")
        if args.labels is not None and not args.points:
            raise SlimlabError("--labels label the --points; give the points too")
    for key, value in EVERYTHING_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # predicted IoU is an unclamped regression output (any threshold may make sense); stability is an IoU in [0, 1]
    if not np.isfinite(args.pred_iou_thresh):
        raise SlimlabError(f"--pred-iou-thresh {args.pred_iou_thresh}: must be a finite number")
    if not args.stability_thresh <= 1:  # also refuses NaN
        raise SlimlabError(f"--stability-thresh {args.stability_thresh}: must be at most 1, or no mask can pass")
    if not np.isfinite(args.tau):
        raise SlimlabError(f"--tau {args.tau}: must be a finite logit")
    if not (np.isfinite(args.cover_margin) and args.cover_margin >= 0):
        raise SlimlabError(f"--cover-margin {args.cover_margin}: must be a finite number of dense strides >= 0")


class StoreOnce(argparse.Action):
    """A flag that may be given once: a second --box would otherwise silently replace the first."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            raise SlimlabError(f"{option_string} given twice; give it once")
        setattr(namespace, self.dest, values)


def protect_negative_pairs(argv: list[str]) -> list[str]:
    """argparse reads "-5,10" or "-1e1" as an unknown option; a leading space makes it a value (float() ignores
    it)."""
    return [f" {item}" if re.fullmatch(r"-\.?\d.*", item) else item for item in argv]  # no option starts "-<digit>"


def segment_command(argv: list[str]) -> int:
    from slimlab.sam.build import load_model
    from slimlab.sam.everything import MaskGenerator
    from slimlab.sam.mask_utils import mask_to_rle, overlay
    from slimlab.sam.predictor import SamPredictor
    from slimlab.sam.transforms import check_resizable, load_image

    parser = argparse.ArgumentParser(prog="slimlab sam segment", description="segment an image with prompts or "
                                     "everything mode; writes mask PNGs, COCO RLE JSON and an overlay")
    parser.add_argument("image")
    parser.add_argument("--checkpoint", required=True, help="official SAM/TinySAM .pth or one written by slimlab")
    parser.add_argument("--model", help="layout name when the file does not say (vit_b, vit_t, shapes_student, ...)")
    parser.add_argument("--points", nargs="*", action="extend", default=[], help="x,y pixel points")
    parser.add_argument("--labels", nargs="*", action="extend", type=int,
                        help="1 (foreground) / 0 (background) per point; default 1")
    parser.add_argument("--box", action=StoreOnce, help="x0,y0,x1,y1")
    parser.add_argument("--everything", action="store_true", help="segment everything with a point grid")
    parser.add_argument("--hierarchical", action="store_true", help="TinySAM's hierarchical everything mode")
    parser.add_argument("--points-per-side", type=int, help="everything mode: grid points per side (default 32)")
    parser.add_argument("--pred-iou-thresh", type=float, help="everything mode: keep masks whose predicted IoU "
                        "exceeds this (default 0.88)")
    parser.add_argument("--stability-thresh", type=float, help="everything mode: minimum stability score "
                        "(default 0.95)")
    parser.add_argument("--tau", type=float, help="hierarchical mode: covered-area logit threshold (default 8.5)")
    parser.add_argument("--cover-margin", type=float,
                        help="hierarchical mode: skip a dense point only when the covered area reaches this many dense "
                             "strides around it on every side, the image border counting as not covered (default 0: "
                             "the official mode; 0.25-1 trade prompts for mIoU with small models)")
    parser.add_argument("--single-mask", action="store_true",
                        help="prompt mode: one mask per prompt instead of SAM's 3")
    parser.add_argument("--int8-encoder", help="encoder_int8.pt2 written by `slimlab sam quantize --int8-inductor` "
                        "from this checkpoint: run the image encoder in int8 (CPU, compiled on load)")
    parser.add_argument("--out", default="runs/sam_segment")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(protect_negative_pairs(argv))
    check_segment_flags(args)
    image = load_image(args.image)
    model = load_model(args.checkpoint, args.model).to(select_device(args.device))
    check_resizable(*image.shape[:2], model.image_size, args.image)  # before any output: name the file
    if args.int8_encoder:
        from slimlab.sam.inductor_int8 import InductorSam

        if model.pixel_mean.device.type != "cpu":
            raise SlimlabError(f"--int8-encoder runs on the CPU (x86 int8 kernels); --device {args.device} chose "
                               f"{model.pixel_mean.device.type}, so add --device cpu")
        model = InductorSam.load(model, args.int8_encoder)
    if args.everything:
        generator = MaskGenerator(model, args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
                                  stability_score_thresh=args.stability_thresh, hierarchical=args.hierarchical,
                                  high_score_thresh=args.tau, cover_margin=args.cover_margin)
        records = generator.generate(image)
        summary = {"mode": "hierarchical" if args.hierarchical else "grid", "masks": len(records),
                   "decoder_prompts": generator.stats.decoder_prompts,
                   "skipped_points": generator.stats.skipped_points, "points_per_side": args.points_per_side,
                   **({"tau": args.tau, "cover_margin": args.cover_margin} if args.hierarchical else {})}
    else:
        points = parse_pairs(args.points, 2, "point") if args.points else None
        labels = None
        if points is not None:
            labels = np.array(args.labels if args.labels is not None else [1] * len(points), dtype=np.float32)
            if len(labels) != len(points):
                raise SlimlabError(f"--labels has {len(labels)} values for {len(points)} points")
            if not np.isin(labels, (0, 1)).all():
                raise SlimlabError(f"--labels {' '.join(str(int(v)) for v in labels)}: each label is 1 (foreground) "
                                   "or 0 (background)")
        box = parse_pairs([args.box], 4, "box")[0] if args.box is not None else None
        predictor = SamPredictor(model)
        predictor.set_image(image)
        masks, scores, _ = predictor.predict(points, labels, box, multimask_output=not args.single_mask)
        order = np.argsort(-scores)
        records = [{"segmentation": masks[i], "area": int(masks[i].sum()), "predicted_iou": float(scores[i])}
                   for i in order]
        summary = {"mode": "prompt", "masks": len(records), "best_predicted_iou": float(scores.max())}
    with atomic_directory(args.out, overwrite=True, inputs=(args.image, args.checkpoint, args.int8_encoder)) as folder:
        for index, record in enumerate(records):
            cv2.imwrite(str(folder / f"mask_{index:03d}.png"), record["segmentation"].astype(np.uint8) * 255)
        plain = [{**{k: v for k, v in r.items() if k != "segmentation"},
                  "segmentation": mask_to_rle(r["segmentation"])} for r in records]
        (folder / "masks.json").write_text(json.dumps({"image": str(args.image), **summary, "annotations": plain}))
        shown = overlay(image, [r["segmentation"] for r in records])
        cv2.imwrite(str(folder / "overlay.png"), shown[:, :, ::-1])
    print(json.dumps(summary))
    print(f"wrote {len(records)} masks, masks.json and overlay.png to {args.out}")
    return 0


def distill_command(argv: list[str]) -> int:
    from slimlab.sam.build import build_model, check_finite_weights, load_model, save_model
    from slimlab.sam.data import FolderDataset
    from slimlab.sam.evaluate import prompted_ious
    from slimlab.sam.shapes import ShapesDataset
    from slimlab.sam.train import (
        TeacherLabeledDataset,
        TrainConfig,
        check_embedding_shapes,
        distill,
        teacher_embeddings,
        train_supervised,
    )
    from slimlab.sam.train_encoder import distill_encoder_only

    parser = argparse.ArgumentParser(prog="slimlab sam distill", description="TinySAM full-stage distillation "
                                     "with online hard prompt sampling; extra key=value pairs override the config")
    parser.add_argument("overrides", nargs="*", help="TrainConfig fields, e.g. steps=500 hard_prompts=teacher")
    parser.add_argument("--config", help="YAML file with TrainConfig fields")
    parser.add_argument("--teacher", help="teacher checkpoint; default: train a shapes teacher here first")
    parser.add_argument("--teacher-steps", type=int, help="steps of the teacher trained here (default 300)")
    parser.add_argument("--student", default="shapes_student", help="student layout name or checkpoint to start from")
    parser.add_argument("--images", help="folder of training images (default: built-in ShapesSA)")
    parser.add_argument("--annotations", help="COCO instances JSON for --images (SA-1B per-image JSON also read)")
    parser.add_argument("--train-images", type=int, help="ShapesSA training images (default 400)")
    parser.add_argument("--test-images", type=int, help="ShapesSA test images for the final mIoU (default 50)")
    parser.add_argument("--annotate-background", action="store_true",
                        help="ShapesSA with its background regions as masks too (SA-1B style: models learn to segment "
                             "background, which lets the hierarchical everything mode skip dense points there)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="MobileSAM-style: train only the student's image encoder by MSE to the teacher's "
                             "embeddings and give it the teacher's prompt encoder and decoder (frozen)")
    parser.add_argument("--out", default="runs/sam_distill")
    parser.add_argument("--device", default="auto")
    args = parser.parse_intermixed_args(argv)
    config = load_config(TrainConfig, args.config, args.overrides)
    for flag, value, ignored_with in (("--teacher-steps", args.teacher_steps, args.teacher and "--teacher"),
                                      ("--train-images", args.train_images, args.images and "--images"),
                                      ("--test-images", args.test_images, args.images and "--images"),
                                      ("--annotate-background", args.annotate_background or None,
                                       args.images and "--images")):
        if value is not None and ignored_with:
            raise SlimlabError(f"{flag} applies to what is built here; with {ignored_with} it would be ignored")
    if args.annotations and not args.images:
        raise SlimlabError("--annotations label the images of --images; give the image folder too")
    args.teacher_steps = 300 if args.teacher_steps is None else args.teacher_steps
    args.train_images = 400 if args.train_images is None else args.train_images
    args.test_images = 50 if args.test_images is None else args.test_images
    for flag, value in (("--teacher-steps", args.teacher_steps), ("--train-images", args.train_images),
                        ("--test-images", args.test_images)):
        if value < 1:
            raise SlimlabError(f"{flag} {value}: must be at least 1")
    check_output_folder(Path(args.out), overwrite=True,
                        inputs=(args.teacher, args.student, args.images, args.annotations, args.config))
    device = select_device(args.device)
    seed_all(config.seed)
    if Path(args.student).is_file():
        student = load_model(args.student)
    elif any(mark in args.student for mark in ("/", "\\", ".pth", ".pt")):
        raise SlimlabError(f"--student {args.student}: file not found")
    else:
        student = build_model(args.student)
    dataset = FolderDataset(args.images, student.image_size, args.annotations) if args.images else \
        ShapesDataset(args.train_images, annotate_background=args.annotate_background)
    if args.images and not args.teacher and not any(len(dataset[i].masks) for i in range(len(dataset))):
        raise SlimlabError(f"{args.images}: images without masks need a trained --teacher to label them")
    teacher = (load_model(args.teacher) if args.teacher else build_model("shapes_teacher")).to(device)
    check_embedding_shapes(teacher, student)  # before the teacher is trained here, not after
    if not args.teacher:
        teacher_config = TrainConfig(steps=args.teacher_steps, images_per_step=config.images_per_step,
                                     prompts_per_image=config.prompts_per_image, seed=config.seed)
        train_supervised(teacher, dataset, teacher_config, "teacher")
        check_finite_weights(teacher, "the teacher trained here (training diverged: try a lower lr)")
    if not args.encoder_only and any(len(dataset[i].masks) == 0 for i in range(len(dataset))):
        # images without masks: the teacher's confident masks stand in for the ground truth
        dataset = TeacherLabeledDataset(dataset, teacher)
        if not any(len(dataset[i].masks) for i in range(len(dataset))):
            raise SlimlabError(f"{args.images}: no ground-truth masks and no confident teacher masks to train on")
    student.to(device)
    # the student starts from the teacher's prompt encoder and decoder (same shapes), as in MobileSAM / TinySAM
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    cached = teacher_embeddings(teacher, dataset)
    if args.encoder_only:
        log = distill_encoder_only(teacher, student, dataset, config, cached)
    else:
        log = distill(teacher, student, dataset, config, cached)
    check_finite_weights(student, "the distilled student (training diverged: try a lower lr)")
    result = {"config": config_to_dict(config), "encoder_only": args.encoder_only, "final_loss": log[-1]["loss"],
              "seconds": log[-1]["seconds"]}
    if not args.images:
        test = ShapesDataset(args.test_images, "test", annotate_background=args.annotate_background)
        result["test_point_miou"] = float(prompted_ious(student, test, "point")["iou"].mean())
        result["teacher_point_miou"] = float(prompted_ious(teacher, test, "point")["iou"].mean())
    # one folder, all or nothing: the student, the teacher trained here (if any) and the summary
    with atomic_directory(args.out, overwrite=True, inputs=(args.teacher, args.student, args.images,
                                                            args.annotations, args.config)) as folder:
        save_model(student, folder / "student.pth")
        if not args.teacher:
            save_model(teacher, folder / "teacher.pth")
        atomic_write_text(folder / "distill.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


def export_onnx_command(argv: list[str]) -> int:
    from slimlab.sam.build import load_model
    from slimlab.sam.onnx_export import check_parity, export_onnx

    parser = argparse.ArgumentParser(prog="slimlab sam export-onnx", description="export encoder and prompt "
                                     "decoder to ONNX and check them with onnxruntime")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", help="layout name when the file does not say")
    parser.add_argument("--out", default="runs/sam_onnx")
    parser.add_argument("--single-mask", action="store_true")
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args(argv)
    model = load_model(args.checkpoint, args.model)
    with atomic_directory(args.out, overwrite=True, inputs=(args.checkpoint,)) as folder:
        paths = export_onnx(model, folder, not args.single_mask)
        errors = {} if args.no_check else check_parity(model, paths, not args.single_mask)
        (folder / "parity.json").write_text(json.dumps(errors, indent=1))
    print(f"wrote {args.out}/encoder.onnx and decoder.onnx; max |onnxruntime - torch|: {json.dumps(errors)}")
    return 0
