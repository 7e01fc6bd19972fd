"""``slimlab sam segment | distill | quantize | export-onnx``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from slimlab.core.config import config_to_dict, load_config
from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory, atomic_write_text
from slimlab.core.runtime import seed_all, select_device


def parse_pairs(values: list[str], width: int, what: str) -> np.ndarray:
    rows = []
    for value in values:
        try:
            numbers = [float(part) for part in value.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != width:
            raise SlimlabError(f"{what} '{value}': expected {width} comma-separated numbers")
        rows.append(numbers)
    return np.array(rows, dtype=np.float32).reshape(-1, width)


def segment_command(argv: list[str]) -> int:
    from slimlab.sam.build import load_model
    from slimlab.sam.everything import MaskGenerator
    from slimlab.sam.mask_utils import mask_to_rle, overlay
    from slimlab.sam.predictor import SamPredictor
    from slimlab.sam.transforms import load_image

    parser = argparse.ArgumentParser(prog="slimlab sam segment", description="segment an image with prompts or "
                                     "everything mode; writes mask PNGs, COCO RLE JSON and an overlay")
    parser.add_argument("image")
    parser.add_argument("--checkpoint", required=True, help="official SAM/TinySAM .pth or one written by slimlab")
    parser.add_argument("--model", help="layout name when the file does not say (vit_b, vit_t, shapes_student, ...)")
    parser.add_argument("--points", nargs="*", default=[], help="x,y pixel points")
    parser.add_argument("--labels", nargs="*", type=int, help="1 (foreground) / 0 (background) per point; default 1")
    parser.add_argument("--box", help="x0,y0,x1,y1")
    parser.add_argument("--everything", action="store_true", help="segment everything with a point grid")
    parser.add_argument("--hierarchical", action="store_true", help="TinySAM's hierarchical everything mode")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-thresh", type=float, default=0.95)
    parser.add_argument("--tau", type=float, default=8.5, help="covered-area logit threshold (hierarchical)")
    parser.add_argument("--single-mask", action="store_true", help="one mask per prompt instead of SAM's 3")
    parser.add_argument("--out", default="runs/sam_segment")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.hierarchical and not args.everything:
        raise SlimlabError("--hierarchical is a variant of --everything; add --everything")
    if args.everything and (args.points or args.box):
        raise SlimlabError("--everything takes no --points or --box")
    if not args.everything and args.points == [] and args.box is None:
        raise SlimlabError("no prompt: give --points x,y ..., --box x0,y0,x1,y1 or --everything")
    image = load_image(args.image)
    model = load_model(args.checkpoint, args.model).to(select_device(args.device))
    if args.everything:
        generator = MaskGenerator(model, args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
                                  stability_score_thresh=args.stability_thresh, hierarchical=args.hierarchical,
                                  high_score_thresh=args.tau)
        records = generator.generate(image)
        summary = {"mode": "hierarchical" if args.hierarchical else "grid", "masks": len(records),
                   "decoder_prompts": generator.stats.decoder_prompts,
                   "skipped_points": generator.stats.skipped_points}
    else:
        points = parse_pairs(args.points, 2, "point") if args.points else None
        labels = None
        if points is not None:
            labels = np.array(args.labels if args.labels is not None else [1] * len(points), dtype=np.float32)
            if len(labels) != len(points):
                raise SlimlabError(f"--labels has {len(labels)} values for {len(points)} points")
        box = parse_pairs([args.box], 4, "box")[0] if args.box else None
        predictor = SamPredictor(model)
        predictor.set_image(image)
        masks, scores, _ = predictor.predict(points, labels, box, multimask_output=not args.single_mask)
        order = np.argsort(-scores)
        records = [{"segmentation": masks[i], "area": int(masks[i].sum()), "predicted_iou": float(scores[i])}
                   for i in order]
        summary = {"mode": "prompt", "masks": len(records), "best_predicted_iou": float(scores.max())}
    with atomic_directory(args.out, overwrite=True) as folder:
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
    from slimlab.sam.build import build_model, load_model, save_model
    from slimlab.sam.data import FolderDataset
    from slimlab.sam.evaluate import prompted_ious
    from slimlab.sam.shapes import ShapesDataset
    from slimlab.sam.train import (
        TeacherLabeledDataset,
        TrainConfig,
        distill,
        teacher_embeddings,
        train_supervised,
    )

    parser = argparse.ArgumentParser(prog="slimlab sam distill", description="TinySAM full-stage distillation "
                                     "with online hard prompt sampling; extra key=value pairs override the config")
    parser.add_argument("overrides", nargs="*", help="TrainConfig fields, e.g. steps=500 hard_prompts=teacher")
    parser.add_argument("--config", help="YAML file with TrainConfig fields")
    parser.add_argument("--teacher", help="teacher checkpoint; default: train a shapes teacher here first")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--student", default="shapes_student", help="student layout name or checkpoint to start from")
    parser.add_argument("--images", help="folder of training images (default: built-in ShapesSA)")
    parser.add_argument("--annotations", help="COCO instances JSON for --images (SA-1B per-image JSON also read)")
    parser.add_argument("--train-images", type=int, default=400, help="ShapesSA training images")
    parser.add_argument("--test-images", type=int, default=50, help="ShapesSA test images for the final mIoU")
    parser.add_argument("--out", default="runs/sam_distill")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    config = load_config(TrainConfig, args.config, args.overrides)
    if config.hard_prompts not in ("gt", "teacher", "off"):
        raise SlimlabError(f"hard_prompts='{config.hard_prompts}': choose gt, teacher or off")
    device = select_device(args.device)
    seed_all(config.seed)
    student = load_model(args.student) if Path(args.student).is_file() else build_model(args.student)
    dataset = FolderDataset(args.images, student.image_size, args.annotations) if args.images else \
        ShapesDataset(args.train_images)
    out = Path(args.out)
    if args.images and not args.teacher and not any(len(dataset[i].masks) for i in range(len(dataset))):
        raise SlimlabError(f"{args.images}: images without masks need a trained --teacher to label them")
    if args.teacher:
        teacher = load_model(args.teacher).to(device)
    else:
        teacher = build_model("shapes_teacher").to(device)
        teacher_config = TrainConfig(steps=args.teacher_steps, images_per_step=config.images_per_step,
                                     prompts_per_image=config.prompts_per_image, seed=config.seed)
        train_supervised(teacher, dataset, teacher_config, "teacher")
        save_model(teacher, out / "teacher.pth")
    if teacher.prompt_encoder.embed_dim != student.prompt_encoder.embed_dim or \
            teacher.prompt_encoder.image_embedding_size != student.prompt_encoder.image_embedding_size:
        raise SlimlabError("teacher and student embeddings differ in shape; pick layouts of the same family size")
    if any(len(dataset[i].masks) == 0 for i in range(len(dataset))):
        # images without masks: the teacher's confident masks stand in for the ground truth
        dataset = TeacherLabeledDataset(dataset, teacher)
        if not any(len(dataset[i].masks) for i in range(len(dataset))):
            raise SlimlabError(f"{args.images}: no ground-truth masks and no confident teacher masks to train on")
    student.to(device)
    # the student starts from the teacher's prompt encoder and decoder (same shapes), as in MobileSAM / TinySAM
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    cached = teacher_embeddings(teacher, dataset)
    log = distill(teacher, student, dataset, config, cached)
    save_model(student, out / "student.pth")
    result = {"config": config_to_dict(config), "final_loss": log[-1]["loss"], "seconds": log[-1]["seconds"]}
    if not args.images:
        test = ShapesDataset(args.test_images, "test")
        result["test_point_miou"] = float(prompted_ious(student, test, "point")["iou"].mean())
        result["teacher_point_miou"] = float(prompted_ious(teacher, test, "point")["iou"].mean())
    atomic_write_text(out / "distill.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


def calibration_batch(model, count: int, folder: str | None):
    """Preprocessed calibration images and two centre-point prompts per image (from GT masks when present)."""
    from slimlab.sam.data import FolderDataset
    from slimlab.sam.evaluate import center_points
    from slimlab.sam.shapes import ShapesDataset

    dataset = FolderDataset(folder, model.image_size) if folder else ShapesDataset(count, "calib", model.image_size)
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in samples])
    coords, owners = [], []
    rng = np.random.default_rng(0)
    for index, sample in enumerate(samples):
        points = center_points(sample.masks[:2]) if len(sample.masks) else \
            rng.uniform(0, model.image_size - 1, size=(2, 2)).astype(np.float32)
        coords.append(torch.from_numpy(points))
        owners += [index] * len(points)
    coords = torch.cat(coords)[:, None, :]
    return model.preprocess(images), coords, torch.ones(coords.shape[:2]), torch.tensor(owners)


def quantize_command(argv: list[str]) -> int:
    from slimlab.sam.build import load_model
    from slimlab.sam.quantize import calibrate, save_scale_table

    parser = argparse.ArgumentParser(prog="slimlab sam quantize", description="post-training W8A8 (or WnAn) "
                                     "fake quantization with calibrated scales; saves float weights + a JSON scale "
                                     "table (never a pickled module)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", help="layout name when the file does not say")
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--method", default="search", choices=["minmax", "percentile", "search"])
    parser.add_argument("--no-twin", action="store_true", help="plain uniform quantizers after softmax / GELU")
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--images", help="folder of calibration images (default: ShapesSA)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--int8-onnx", action="store_true",
                        help="instead: export ONNX graphs and quantize them to real int8 (onnxruntime dynamic "
                             "MatMul); writes encoder/decoder(.int8).onnx")
    parser.add_argument("--out", default="runs/sam_quantized")
    args = parser.parse_args(argv)
    model = load_model(args.checkpoint, args.model)
    images, coords, labels, owners = calibration_batch(model, args.calibration_images, args.images)
    if args.int8_onnx:
        return int8_onnx(model, images, coords, labels, owners, args.out)
    quantized, table = calibrate(model, images, coords, labels, owners, args.bits, args.method, not args.no_twin,
                                 args.candidates, args.rounds)
    with torch.no_grad():
        reference = model.decode(model.encode(images)[owners], coords, labels)[0] > 0
        output = quantized.decode(quantized.encode(images)[owners], coords, labels)[0] > 0
    agreement = float((reference & output).sum() / (reference | output).sum().clamp(min=1))
    with atomic_directory(args.out, overwrite=True) as folder:
        torch.save({"spec": dict(model.spec), "model": model.state_dict()}, folder / "model.pth")
        save_scale_table(table, folder / "scales.json")
        (folder / "quantize.json").write_text(json.dumps(
            {"bits": args.bits, "method": args.method, "twin": not args.no_twin,
             "calibration_mask_iou_vs_float": agreement, "quantizers": len(table)}, indent=1))
    print(f"calibrated {len(table)} quantizers ({args.method}, W{args.bits}A{args.bits}); mask IoU vs float on the "
          f"calibration prompts {agreement:.4f}; wrote {args.out}/model.pth and scales.json")
    return 0


@torch.no_grad()
def int8_onnx(model, images, coords, labels, owners, out: str) -> int:
    """Float + int8 ONNX graphs in ``out``; prints the int8 masks' IoU with the float model's on the prompts."""
    from slimlab.sam.onnx_runtime import OnnxRuntimeSam

    with atomic_directory(out, overwrite=True) as folder:
        runtime = OnnxRuntimeSam.from_model(model, folder, int8=True)
        intersection = union = 0.0
        for index in range(len(images)):
            chosen = owners == index
            if not bool(chosen.any()):
                continue
            reference = model.decode(model.encode(images[index:index + 1]), coords[chosen], labels[chosen])[0] > 0
            output = runtime.decode(runtime.encode(images[index:index + 1]), coords[chosen], labels[chosen])[0] > 0
            intersection += float((reference & output).sum())
            union += float((reference | output).sum())
        agreement = intersection / max(union, 1.0)
        (folder / "quantize.json").write_text(json.dumps(
            {"backend": "onnxruntime dynamic int8 (MatMul, Gemm)", "calibration_mask_iou_vs_float": agreement},
            indent=1))
    print(f"wrote {out}/encoder_int8.onnx and decoder_int8.onnx (and the float graphs); mask IoU vs float on "
          f"{len(images)} images' prompts {agreement:.4f}")
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
    with atomic_directory(args.out, overwrite=True) as folder:
        paths = export_onnx(model, folder, not args.single_mask)
        errors = {} if args.no_check else check_parity(model, paths, not args.single_mask)
        (folder / "parity.json").write_text(json.dumps(errors, indent=1))
    print(f"wrote {args.out}/encoder.onnx and decoder.onnx; max |onnxruntime - torch|: {json.dumps(errors)}")
    return 0
