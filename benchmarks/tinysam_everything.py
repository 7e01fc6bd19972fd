"""The TinySAM benchmark's everything-mode arms on the teacher: SAM's point grid against TinySAM's hierarchical
mode, at the benchmark's 16x16 density (sparse 4x4 first) and at the spec's 32x32 (sparse 8x8 first, tau 7 / 8.5 /
10 as in the paper's ablation, and 4.6: probability 0.99)."""

from __future__ import annotations

import numpy as np
import torch

from slimlab.sam.evaluate import median_latency
from slimlab.sam.everything import MaskGenerator
from slimlab.sam.mask_utils import mask_iou

# filters for the small models: SAM's 0.88 / 0.95 leave almost nothing at this scale
EVERYTHING_FILTERS = {"points_per_side": 16, "points_per_batch": 64, "pred_iou_thresh": 0.5,
                      "stability_score_thresh": 0.8}
# points per side -> tau of the hierarchical arms (raw logits); 4.6 = logit(0.99), the spec's "tau as a probability"
DENSITIES = {16: (8.5, 2.0), 32: (4.6, 7.0, 8.5, 10.0)}


def everything_row(model, samples, name: str, **options) -> dict:
    generator = MaskGenerator(model, **options)
    prompts, batches, skipped, times, recalls50, recalls75, best_ious, masks_out = 0, 0, 0, [], [], [], [], 0
    for sample in samples:
        records = generator.generate(sample.image)  # warm-up and the output we score
        prompts += generator.stats.decoder_prompts
        batches += generator.stats.decoder_batches
        skipped += generator.stats.skipped_points  # dense points covered by round 1 (hierarchical only)
        times.append(median_latency(lambda: generator.generate(sample.image), repeats=3, warmup=0))
        masks_out += len(records)
        gt = torch.from_numpy(sample.masks)
        if records:
            predicted = torch.from_numpy(np.array([r["segmentation"] for r in records]))
            best = mask_iou(gt, predicted).max(dim=1).values
        else:
            best = torch.zeros(len(gt))
        best_ious += best.tolist()
        recalls50.append(float((best >= 0.5).float().mean()))
        recalls75.append(float((best >= 0.75).float().mean()))
    return {"mode": name, "decoder_prompts_per_image": prompts / len(samples),
            "decoder_batches_per_image": batches / len(samples), "skipped_points_per_image": skipped / len(samples),
            "seconds_per_image": float(np.mean(times)), "masks_per_image": masks_out / len(samples),
            "recall_50": float(np.mean(recalls50)), "recall_75": float(np.mean(recalls75)),
            "miou": float(np.mean(best_ious)), "options": dict(options)}


def everything_arms(model, samples) -> list[dict]:
    """Per density: the full grid, then the hierarchical arms (tau each); then an 8x8 grid for scale."""
    rows = []
    for side, taus in DENSITIES.items():
        options = {**EVERYTHING_FILTERS, "points_per_side": side}
        rows.append(everything_row(model, samples, f"grid {side}x{side}", **options))
        rows += [everything_row(model, samples, f"hierarchical {side // 4}x{side // 4} -> {side}x{side}, tau {tau}",
                                hierarchical=True, high_score_thresh=tau, **options) for tau in taus]
    rows.append(everything_row(model, samples, "grid 8x8", **{**EVERYTHING_FILTERS, "points_per_side": 8}))
    return rows


def everything_summary(rows: list[dict]) -> dict:
    """Decoder-call reduction and mIoU drop of the hierarchical arm with the fewest decoder calls against the grid
    of the same density; the 16x16 figures keep the target keys, the 32x32 ones get a ``_32`` suffix."""
    summary = {}
    for side, suffix in ((16, ""), (32, "_32")):
        same_density = [row for row in rows if row["options"]["points_per_side"] == side]
        grid = next(row for row in same_density if not row["options"].get("hierarchical"))
        arms = [row for row in same_density if row["options"].get("hierarchical")]
        if not arms:
            continue
        best = min(arms, key=lambda row: row["decoder_prompts_per_image"])
        summary[f"hierarchical_decoder_call_reduction{suffix}"] = (grid["decoder_prompts_per_image"] /
                                                                  max(best["decoder_prompts_per_image"], 1e-9))
        summary[f"hierarchical_miou_drop{suffix}"] = grid["miou"] - best["miou"]
        summary[f"hierarchical_seconds_reduction{suffix}"] = (grid["seconds_per_image"] /
                                                             max(best["seconds_per_image"], 1e-9))
    return summary
