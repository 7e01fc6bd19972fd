"""TinySAM section of ``slimlab demo``: train a small teacher on ShapesSA, distill a TinyViT student with hard prompt
sampling, segment with points and hierarchical everything mode, quantize to W8A8 and export to ONNX."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from slimlab.core.runtime import seed_all
from slimlab.sam.build import build_model
from slimlab.sam.evaluate import center_points, count_macs, prompted_ious
from slimlab.sam.everything import MaskGenerator
from slimlab.sam.mask_utils import overlay
from slimlab.sam.onnx_export import check_parity, export_onnx
from slimlab.sam.predictor import SamPredictor
from slimlab.sam.quantize import calibrate
from slimlab.sam.shapes import ShapesDataset
from slimlab.sam.train import TrainConfig, distill, teacher_embeddings, train_supervised


def run_demo(out_dir: Path, quick: bool) -> str:
    seed_all(0)
    started = time.perf_counter()
    train = ShapesDataset(16 if quick else 400)
    test = ShapesDataset(4 if quick else 40, "test")
    teacher = build_model("shapes_teacher")
    train_supervised(teacher, train, TrainConfig(steps=15 if quick else 400, images_per_step=4 if quick else 8))
    student = build_model("shapes_student")
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    config = TrainConfig(steps=8 if quick else 200, images_per_step=4 if quick else 8, max_rounds=3 if quick else 9)
    distill(teacher, student, train, config, teacher_embeddings(teacher, train))
    teacher_miou = float(prompted_ious(teacher, test, "point")["iou"].mean())
    student_miou = float(prompted_ious(student, test, "point")["iou"].mean())
    macs_ratio = count_macs(student)["total"] / count_macs(teacher)["total"]

    sample = test[0]
    predictor = SamPredictor(student)
    predictor.set_image(sample.image)
    points = center_points(sample.masks)
    masks, _, _ = predictor.predict(points[:, None, :], np.ones((len(points), 1)))  # batched: one prompt per shape
    cv2.imwrite(str(out_dir / "points.png"), overlay(sample.image, list(masks[:, 0]))[:, :, ::-1])
    grid = MaskGenerator(teacher, points_per_side=16, pred_iou_thresh=0.5, stability_score_thresh=0.8)
    grid_records = grid.generate(sample.image)
    hierarchical = MaskGenerator(teacher, points_per_side=16, pred_iou_thresh=0.5, stability_score_thresh=0.8,
                                 hierarchical=True, high_score_thresh=2.0)
    records = hierarchical.generate(sample.image)
    cv2.imwrite(str(out_dir / "everything.png"),
                overlay(sample.image, [r["segmentation"] for r in records])[:, :, ::-1])

    calibration = ShapesDataset(2, "calib")
    images = student.preprocess(torch.stack([torch.from_numpy(calibration[i].image).permute(2, 0, 1).float()
                                             for i in range(2)]))
    coords = torch.from_numpy(np.concatenate([center_points(calibration[i].masks[:2]) for i in range(2)]))[:, None]
    owners = torch.tensor([0] * len(calibration[0].masks[:2]) + [1] * len(calibration[1].masks[:2]))
    quantized, _ = calibrate(student, images, coords, torch.ones(len(coords), 1), owners, method="minmax")
    quant_miou = float(prompted_ious(quantized, test, "point")["iou"].mean())
    parity = check_parity(student, export_onnx(student, out_dir / "onnx"))
    return "\n".join([
        f"Teacher (ViT) and student (TinyViT, {macs_ratio:.2f}x the MACs) trained here on ShapesSA "
        f"({'quick: a few steps, masks are rough' if quick else 'full demo settings'}).", "",
        "| model | test mIoU (one centre point) |", "|---|---|",
        f"| teacher | {teacher_miou:.3f} |", f"| student, distilled with hard prompts | {student_miou:.3f} |",
        f"| student, W8A8 fake quantization (min-max) | {quant_miou:.3f} |", "",
        f"Everything mode on one image: grid 16x16 used {grid.stats.decoder_prompts} decoder prompts "
        f"({len(grid_records)} masks); hierarchical used {hierarchical.stats.decoder_prompts} "
        f"({len(records)} masks, {hierarchical.stats.skipped_points} points skipped as covered).", "",
        f"ONNX parity (max |onnxruntime - torch|): {', '.join(f'{k} {v:.1e}' for k, v in parity.items())}.", "",
        "![point prompts](sam/points.png) ![hierarchical everything](sam/everything.png)", "",
        f"_{time.perf_counter() - started:.0f} s_"])
