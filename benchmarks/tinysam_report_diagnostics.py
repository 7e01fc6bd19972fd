"""TinySAM report: the spec's arms beyond TinySAM's recipe (MobileSAM's encoder-only distillation, EdgeSAM's
prompt-in-the-loop) and the distillation diagnostics (IoU-head calibration, hard prompt sampler, H_i)."""

from __future__ import annotations

from tinysam_markdown import table


def arm_comparison(arm: dict, baseline: dict) -> str:
    """'one point 0.372 vs 0.385, ...; beyond the larger seed std: ...' for two arms' seed means."""
    cells, beyond = [], []
    for key, label in (("miou_point", "one point"), ("miou_box", "box"), ("miou_3_clicks", "3 clicks")):
        gap, spread = arm[key] - baseline[key], max(arm[f"{key}_std"], baseline[f"{key}_std"])
        cells.append(f"{label} {arm[key]:.3f} vs {baseline[key]:.3f}")
        if abs(gap) > spread:
            beyond.append(f"{label} ({'better' if gap > 0 else 'worse'} by {gap:+.3f}, larger std {spread:.3f})")
    return ", ".join(cells) + "; beyond the larger seed std: " + (", ".join(beyond) or "none") + "."


SAMPLER_POINTS = (0, 1, 2, 3, 5, 9)  # point indices shown in the sampler table


OTHER_ARMS = (  # (arm, the arm it differs from by one choice, the comparison's wording)
    ("distill_encoder_only", "distill_random_prompts",
     "MobileSAM's encoder-only distillation (MSE on the image embeddings, the teacher's decoder frozen) against "
     "full-stage distillation with random prompts (L1 on embeddings, decoder tokens and mask logits plus the GT "
     "losses, decoder trained)"),
    ("distill_teacher_prompts", "distill_hard_prompts_no_weighting",
     "EdgeSAM's prompt-in-the-loop (`hard_prompts=teacher`: clicks where student and teacher disagree, loss against "
     "the teacher's masks) against TinySAM's GT sampler without weighting (`hard_prompts=gt`)"))


def other_arm_lines(models: dict) -> list[str]:
    """Arms (1) and (3b) against the arms they differ from by one choice (means over seeds)."""

    lines = []
    for name, baseline_name, wording in OTHER_ARMS:
        arm, baseline = models.get(f"student: {name}"), models.get(f"student: {baseline_name}")
        if arm is not None and baseline is not None and "miou_point_std" in arm:
            lines.append(f"- {wording}: " + arm_comparison(arm, baseline) + f" Mask IoU vs the teacher "
                         f"{arm['miou_vs_teacher']:.3f} against {baseline['miou_vs_teacher']:.3f}.")
    full_stage = [models[f"student: {name}"] for name in ("distill_random_prompts", "distill_hard_prompts_no_weighting",
                                                           "distill_hard_prompts") if f"student: {name}" in models]
    if len(lines) == 2 and full_stage:
        teacher_only = [models[f"student: {name}"] for name, _, _ in OTHER_ARMS]
        lines.append("- The two arms that learn from the teacher's outputs alone agree with the teacher most (mask IoU "
                     f"vs the teacher {spread([row['miou_vs_teacher'] for row in teacher_only])} against "
                     f"{spread([row['miou_vs_teacher'] for row in full_stage])} for the full-stage arms) and reach "
                     f"one-point mIoU {spread([row['miou_point'] for row in teacher_only])} against "
                     f"{spread([row['miou_point'] for row in full_stage])}. The full-stage arms also train on SAM's "
                     "ground-truth mask and IoU losses (`gt_loss_weight` 1) and move the decoder with them; the arms "
                     "differ in other choices too (losses, prompts), so this run does not isolate the cause.")
    return lines


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(min(values))} to {fmt.format(max(values))}"


def diagnostics_reading(calibration: list[dict], sampler: list[dict], weights: list[dict]) -> list[str]:
    """What the three diagnostics tables say, worded from their numbers."""
    later = [row[key] for row in sampler for key in row if key.startswith("d") and key != "d0"]
    lines = [f"- IoU heads: mean absolute error {spread([row['point_error'] for row in calibration])} (one point) "
             f"against mIoU {spread([row['point_actual'] for row in calibration])}, bias "
             f"{spread([row['point_bias'] for row in calibration], '{:+.3f}')}: every model's head predicts the kept "
             "mask's IoU only roughly at this scale, with little systematic over-confidence.",
             f"- Sampler: after the first point, points land {spread(later, '{:.2f}')} px from the GT boundary "
             f"against {sampler[0]['d0']:.2f} px for a uniform point, {spread([row['miss_share'] for row in sampler])}"
             " of them in the model's miss region" + (": the hard points sit along the edges the masks get wrong"
                                                      if max(later) < sampler[0]["d0"] else "") + ". The "
             f"mask each round corrects improves from {spread([row['iou_first'] for row in sampler])} mIoU "
             f"(round 1) to {spread([row['iou_last'] for row in sampler])} (last round)."]
    if weights:
        lines.append(f"- H_i: mean {spread([row['mean'] for row in weights])} per student; "
                     f"{spread([row['above'] for row in weights])} of the masks get H > 0.6 (the student lags the "
                     f"teacher there) and {spread([row['floor'] for row in weights])} H < 0.3 (the teacher fails "
                     "where the student does not)" + (
                         ": on most masks the teacher's IoU is at most 1.4x the student's (H <= 0.6), so the "
                         "weighting mostly scales the logit loss between 0.27 and 0.6."
                         if max(row["above"] for row in weights) < 0.5 else "."))
    return lines + [""]


def diagnostics_section(diagnostics: dict | None) -> list[str]:
    """Tables of the first-seed diagnostics (benchmarks/tinysam_prompted.first_seed_diagnostics)."""
    if not diagnostics:
        return []

    calibration = [{"model": name, "point_error": entry["iou_calibration_point"]["abs_error"],
                    "point_bias": entry["iou_calibration_point"]["bias"],
                    "point_actual": entry["iou_calibration_point"]["actual"],
                    "box_error": entry["iou_calibration_box"]["abs_error"],
                    "box_bias": entry["iou_calibration_box"]["bias"]} for name, entry in diagnostics.items()]
    sampler = []
    for name, entry in diagnostics.items():
        trace = entry["sampler"]
        row = {"model": name, **{f"d{index}": trace["boundary_distance"][index] for index in SAMPLER_POINTS
                                 if index < len(trace["boundary_distance"])}}
        shares = [value for value in trace["in_miss_region"] if value is not None]
        row["miss_share"] = sum(shares) / len(shares) if shares else None
        row["iou_first"], row["iou_last"] = trace["iou_before"][1], trace["iou_before"][-1]
        sampler.append(row)
    rounds = len(next(iter(diagnostics.values()))["sampler"]["boundary_distance"]) - 1
    weights = [{"model": name, "mean": entry["hard_mask_weights"]["mean"],
                "above": entry["hard_mask_weights"]["share_above_0.6"],
                "floor": entry["hard_mask_weights"]["counts"][0] / max(sum(entry["hard_mask_weights"]["counts"]), 1)}
               for name, entry in diagnostics.items() if "hard_mask_weights" in entry]
    return [
        "## Distillation diagnostics (teacher and each arm's first-seed student, test set)", "",
        "IoU-head calibration: |predicted IoU - actual IoU| of the kept mask (highest predicted IoU), one "
        "distance-transform centre point or one tight box per instance; bias > 0: over-confident.", "",
        table(calibration, [("model", "model", ""), ("point: mean abs error", "point_error", "{:.3f}"),
                            ("point: bias", "point_bias", "{:+.3f}"), ("point: actual mIoU", "point_actual", "{:.3f}"),
                            ("box: mean abs error", "box_error", "{:.3f}"), ("box: bias", "box_bias", "{:+.3f}")]), "",
        f"TinySAM's `gt` hard prompt sampler run with each model for {rounds} rounds on every test instance (as in "
        "training, with that model's masks): distance of point r to the GT boundary in pixels (1 = on the edge; "
        "point 0 is uniform in the GT mask, so its column is what a random sampler gives), the share of later points "
        "drawn from the model's miss region (the rest fall back to a uniform GT point: the mask already covered the "
        "GT), and the mIoU of the mask that round 1 and the last round correct:", "",
        table(sampler, [("model", "model", "")] + [(f"point {index}", f"d{index}", "{:.2f}") for index in SAMPLER_POINTS
                                                   if index <= rounds]
              + [("in miss region", "miss_share", "{:.3f}"), ("mIoU before round 1", "iou_first", "{:.3f}"),
                 (f"mIoU before round {rounds}", "iou_last", "{:.3f}")]), "",
        "Hard mask weights H_i = sigmoid(IoU(teacher mask i, GT) / (IoU(student mask i, GT) + eps) - 1) of each "
        "student against the teacher, every mask output of one centre point per test instance (the weighting's "
        "input when that student trains on): 0.5 where both are equally good, 1 where the student misses what the "
        "teacher finds, sigmoid(-1) = 0.27 where the teacher finds nothing (whatever the student does):", "",
        table(weights, [("model", "model", ""), ("mean H", "mean", "{:.3f}"), ("share H > 0.6", "above", "{:.3f}"),
                        ("share H < 0.3 (teacher IoU < 0.15 x student IoU)", "floor", "{:.3f}")]), "",
        *diagnostics_reading(calibration, sampler, weights)]
