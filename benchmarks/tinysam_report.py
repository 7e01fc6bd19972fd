"""Markdown report of the TinySAM benchmark: tables and paragraphs computed from its JSON result."""

from __future__ import annotations

import json

from tinysam_markdown import table
from tinysam_report_diagnostics import arm_comparison, diagnostics_section, other_arm_lines
from tinysam_report_everything import (EVERYTHING_COLUMNS, annotated_everything_section, annotated_target_rows,
                                       call_bound_paragraph)
from tinysam_report_int8 import int8_target_rows, quantization_section


def scene_text_table(rows: list[dict] | None) -> list[str]:
    if not rows:
        return ["OpenCV scene-text sanity set: not run (needs opencv-doc's examples/text, `--scene-text DIR`).", ""]
    return ["OpenCV scene-text sanity set (opencv-doc `scenetext_segmented_word0*.jpg` with their `_mask.png`; each "
            "letter is one instance; real photos, derived GT, qualitative; the first seed's students). Get it with "
            "`apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb <opencv-doc>`:", "",
            table(rows, [("model", "model", ""), ("mIoU point", "miou_point", "{:.3f}"),
                         ("mIoU box", "miou_box", "{:.3f}")]), ""]


def click_curve_table(rows: list[dict]) -> list[str]:
    """mIoU after 1..n clicks per model (rows stored before the click curves: nothing)."""
    if not all("miou_click_curve" in row for row in rows):
        return []
    clicks = len(rows[0]["miou_click_curve"])
    cells = []
    for row in rows:
        cell = {"model": row["model"], "seeds": row.get("seeds", [])}
        for index, value in enumerate(row["miou_click_curve"]):
            cell[f"c{index + 1}"] = value
            if "miou_click_curve_std" in row:
                cell[f"c{index + 1}_std"] = row["miou_click_curve_std"][index]
        cells.append(cell)
    columns = [("model", "model", "")] + [(f"{k} click{'s' if k > 1 else ''}", f"c{k}", "{:.3f}")
                                          for k in range(1, clicks + 1)]
    return ["mIoU after each click (first click at the mask's distance-transform centre, each next one at the centre "
            "of the largest error, positive where the mask missed, negative where it spilled; the previous "
            "low-res logits as mask prompt):", "", table(cells, columns), ""]


def limits_of_scale(result: dict) -> list[str]:
    """What the CPU scale of this run means for its figures (worded from the run's own numbers)."""
    models = {row["model"]: row for row in result["prompted"]}
    teacher, gt_only = models["teacher (ViT)"], models["student: gt_only"]
    distilled = models["student: distill_hard_prompts"]
    grid = result["everything"][0]
    lines = [f"- The teacher is trained from scratch on CPU ({result['settings']['teacher_steps']} steps, one-point mIoU "
             f"{teacher['miou_point']:.3f}), far from SAM's scale, so the ratios above compare small models. Everything "
             f"mode keeps only masks whose predicted IoU and stability pass the filters ({grid['masks_per_image']:.1f} "
             "masks per image from the 16x16 grid); the few confident masks of the sparse 4x4 grid cover little of "
             "the image, so the hierarchical mode has few dense points to skip."]
    if gt_only["miou_point"] > teacher["miou_point"]:
        lines.append("- The student trained on ground truth beats the teacher: distilling from that teacher pulls the "
                     "student down to the teacher's level, and a student/teacher mIoU ratio >= 0.9 then holds only "
                     "because the teacher is weak.")
    elif gt_only["miou_point"] < distilled["miou_point"]:
        lines.append(f"- The student trained on ground truth alone ({gt_only['miou_point']:.3f}) stays below the "
                     f"distilled one ({distilled['miou_point']:.3f}) at the same step budget: distillation from this "
                     "teacher adds what the ground-truth loss alone does not reach in that budget.")
    else:
        spread = max(gt_only.get("miou_point_std", 0.0), distilled.get("miou_point_std", 0.0))
        within = gt_only["miou_point"] - distilled["miou_point"] <= spread
        lines.append(f"- The student trained on ground truth alone ({gt_only['miou_point']:.3f}) reaches the distilled "
                     f"one ({distilled['miou_point']:.3f}) at the same step budget"
                     + (f", within the larger seed std ({spread:.3f})" if within else "")
                     + ": on one-point mIoU distillation from this teacher buys nothing over the ground-truth loss "
                     f"here; what it buys is agreement with the teacher (mask IoU vs the teacher "
                     f"{distilled['miou_vs_teacher']:.3f} against {gt_only['miou_vs_teacher']:.3f}).")
    random_arm = models.get("student: distill_random_prompts")
    unweighted = models.get("student: distill_hard_prompts_no_weighting")
    hard = unweighted or distilled  # hard prompts alone where the run has that arm
    if random_arm is not None and "miou_point_std" in hard:
        lines.append(f"- Hard prompt sampling{'' if unweighted else ' (+ hard mask weighting)'} against random prompts "
                     "(same losses and budget, means over seeds): " + arm_comparison(hard, random_arm)
                     + clicks_reading(hard, random_arm))
    if unweighted is not None and "miou_point_std" in distilled:
        split = "" if random_arm is None else (
            f" The full recipe's one-point gap to random prompts ({distilled['miou_point']:.3f} vs "
            f"{random_arm['miou_point']:.3f}: {distilled['miou_point'] - random_arm['miou_point']:+.3f}) is "
            f"{unweighted['miou_point'] - random_arm['miou_point']:+.3f} from hard prompt sampling and "
            f"{distilled['miou_point'] - unweighted['miou_point']:+.3f} from the weighting.")
        lines.append("- Hard mask weighting on top of hard prompt sampling against hard prompt sampling alone: "
                     + arm_comparison(distilled, unweighted) + split)
    return lines + other_arm_lines(models)


def clicks_reading(hard: dict, random_arm: dict) -> str:
    """Where along the click curve hard prompt sampling leads, read against what each arm trains on."""
    if "miou_click_curve" not in hard or "miou_click_curve" not in random_arm:
        return ""
    hard_curve, random_curve = hard["miou_click_curve"], random_arm["miou_click_curve"]
    gaps = [a - b for a, b in zip(hard_curve, random_curve)]
    spread = max(hard["miou_click_curve_std"][0], random_arm["miou_click_curve_std"][0])
    clicks = len(gaps)
    return (f" Gap along the click curve (1 to {clicks} clicks): " + ", ".join(f"{g:+.3f}" for g in gaps)
            + f"; at one click {'within' if abs(gaps[0]) <= spread else 'beyond'} the larger seed std "
            f"({spread:.3f}). From 1 to {clicks} clicks the random-prompt student changes by "
            f"{random_curve[-1] - random_curve[0]:+.3f} (the hard-prompt one by {hard_curve[-1] - hard_curve[0]:+.3f})"
            + (": trained on single points without a mask prompt, it does not learn to use corrective clicks, while "
               if random_curve[-1] - random_curve[0] <= spread else "; ")
            + "the hard-prompt arm trains its point prompts with 1 to 10 clicks (0-9 rounds drawn uniformly) and the "
            "previous mask as prompt, so that only one point prompt in ten is a single click.")


def seed_lines(result: dict) -> list[str]:
    seeds = result["settings"].get("seeds", [0])
    if len(seeds) < 2:
        return ["- One seed per student arm."]
    ratios = ", ".join(f"{value:.3f}" for value in result["summary"]["student_teacher_miou_ratio_per_seed"])
    return [f"- Student arms are trained with seeds {seeds} (initialisation, batches and prompts; mean ± sample std "
            f"over seeds in the tables, tags as means); the teacher, PTQ and everything mode use one seed, PTQ and "
            f"the figures the first seed's student. Student/teacher ratio per seed (hard prompts): {ratios}."]


def render_markdown(result: dict, figures: list[str]) -> str:
    s = result["summary"]
    targets = [
        ("student mIoU / teacher mIoU (one point)", f"{s['student_teacher_miou_ratio']:.3f}", ">= 0.90",
         s["student_teacher_miou_ratio"] >= 0.9),
        ("student MACs / teacher MACs", f"{s['student_macs_ratio']:.3f}", "<= 0.20", s["student_macs_ratio"] <= 0.2),
        ("hierarchical decoder-call reduction", f"{s['hierarchical_decoder_call_reduction']:.2f}x" + (
            f" (at most {s['hierarchical_call_reduction_ceiling']:.2f}x on these images, see below)"
            if "hierarchical_call_reduction_ceiling" in s else ""), ">= 1.8x",
         s["hierarchical_decoder_call_reduction"] >= 1.8),
        ("hierarchical mIoU drop (points)", f"{100 * s['hierarchical_miou_drop']:.2f}", "<= 1",
         s["hierarchical_miou_drop"] <= 0.01),
        *([("hierarchical at the spec's density (8x8 -> 32x32): decoder-call reduction",
            f"{s['hierarchical_decoder_call_reduction_32']:.2f}x", ">= 1.8x",
            s["hierarchical_decoder_call_reduction_32"] >= 1.8),
           ("hierarchical at the spec's density: mIoU drop (points)", f"{100 * s['hierarchical_miou_drop_32']:.2f}",
            "<= 1", s["hierarchical_miou_drop_32"] <= 0.01)] if "hierarchical_miou_drop_32" in s else []),
        *annotated_target_rows(result.get("everything_annotated_background")),
        *int8_target_rows(s, result.get("trained_full_size_int8_repeats")),
    ]
    parts = [
        "# TinySAM benchmark (CPU, ShapesSA)", "",
        f"Command: `{result['command']}`  ", f"Machine: {result['machine']}  ",
        f"Wall time: {result['seconds'] / 60:.1f} min. Settings: `{json.dumps(result['settings'])}`", "",
        "All models are trained in this run on the procedural ShapesSA set (128 px, 3-12 shapes over skimage "
        "textures); no SAM weights or SA-1B are available offline, so every claim is relative to a teacher trained "
        "here. mIoU is a fraction in [0, 1] (SAM protocol: multimask output, keep the highest predicted IoU). "
        "Latencies are medians after warm-up on a shared CPU and are noisy.", "",
        "## Targets", "", "| claim | measured | target | holds |", "|---|---|---|---|"]
    parts += [f"| {a} | {b} | {c} | {'yes' if ok else 'no'} |" for a, b, c, ok in targets]
    if result.get("everything_command"):
        parts += ["", f"The everything-mode arms were measured again afterwards with `{result['everything_command']}` "
                  "(the teacher retrained with the same seed, data and steps, checked against its stored one-point "
                  "mIoU; the full command above measures them too)."]
    if result.get("prompted_command"):
        parts += ["", f"The teacher and student tables were measured again afterwards with "
                  f"`{result['prompted_command']}` (teacher and every student retrained with the same seeds, data and "
                  "steps; each model the stored run had reproduced its one-point mIoU, so the other sections still "
                  "describe these models)."]
    if result.get("prompted_arms_command"):
        parts += ["", f"Arms were added afterwards with `{result['prompted_arms_command']}`: the teacher retrained and "
                  "checked as above, each arm new to the run trained with every seed, each stored arm named there "
                  "retrained with its first seed (which reproduced its stored one-point mIoU) for the first-seed "
                  "tables and the diagnostics."]
    if result.get("bounds_command"):
        parts += ["", f"The 'at most' bounds, the full-size int8 rows and the int8 schemes were measured again "
                  f"afterwards with `{result['bounds_command']}` (no training; the full command above measures them "
                  "too)."]
    if result.get("trained_full_size_command"):
        parts += ["", f"The trained full-size int8 rows were measured afterwards with "
                  f"`{result['trained_full_size_command']}` (the full command above measures them too)."]
    parts += ["", "## Teacher vs students (same step budget for every student: settings `student_steps`)", "",
              table(result["prompted"], [("model", "model", ""), ("mIoU 1 point", "miou_point", "{:.3f}"),
                                         ("mIoU box", "miou_box", "{:.3f}"), ("mIoU 3 clicks", "miou_3_clicks", "{:.3f}"),
                                         ("IoU vs teacher", "miou_vs_teacher", "{:.3f}"),
                                         ("MACs (M)", "macs_millions", "{:.1f}"), ("CPU ms / image", "latency_ms", "{:.1f}")])
              .replace(" | 1", " | 1"), "",
              "MACs = one image encoding + one point-prompt decoding (torch FlopCounter / 2). Every student starts "
              "from the teacher's prompt encoder and mask decoder. The full-stage distillation arms (L1 on image "
              "embeddings, decoder tokens and mask logits, plus the GT mask and IoU losses) prompt with a box or a "
              "point, p = 0.5 each; the hard-prompt arms then add points drawn from the student's miss region for "
              "0-9 rounds (boxes are not iterated); `distill_hard_prompts` adds hard mask weighting (TinySAM's full "
              "recipe), `distill_hard_prompts_no_weighting` does not."
              + (" `distill_encoder_only` is MobileSAM's decoupled distillation: MSE on the image embeddings only, "
                 "the teacher's decoder kept frozen." if any(r["model"] == "student: distill_encoder_only"
                                                               for r in result["prompted"]) else "")
              + (" `distill_teacher_prompts` is EdgeSAM's prompt-in-the-loop: a box or a point, then 2 clicks where "
                 "student and teacher disagree, BCE x 5 + Dice x 5 against the teacher's masks, plus L1 on the "
                 "embeddings and the first state's tokens." if any(r["model"] == "student: distill_teacher_prompts"
                                                                    for r in result["prompted"]) else ""), "",
              *click_curve_table(result["prompted"]),
              "mIoU (one point) by difficulty tag (students: mean over seeds):", "",
              table([{"model": r["model"], **r["miou_point_by_tag"]} for r in result["prompted"]],
                    [("model", "model", ""), ("thin", "thin", "{:.3f}"), ("concave", "concave", "{:.3f}"),
                     ("occluded", "occluded", "{:.3f}"), ("small", "small", "{:.3f}")]), "",
              "skimage sanity images (coins: GT from Otsu + labelling; horse: its own silhouette; derived GT, "
              "qualitative; the first seed's students):", "",
              table(result["skimage_sanity"], [("model", "model", ""), ("mIoU point", "miou_point", "{:.3f}"),
                                                ("mIoU box", "miou_box", "{:.3f}")]), "",
              *scene_text_table(result.get("scene_text_sanity")),
              *diagnostics_section(result.get("first_seed_diagnostics")),
              f"## Everything mode (teacher; {result['settings']['everything_images']} ShapesSA test images + coins)",
              "",
              table(result["everything"], EVERYTHING_COLUMNS), "",
              "Filters for the small models: predicted IoU > 0.5, stability >= 0.8 (SAM's 0.88 / 0.95 leave almost "
              "nothing at this scale). The hierarchical summary uses, per density, the tau with the fewest decoder "
              "calls.", "",
              *call_bound_paragraph(result.get("hierarchical_bound")),
              *annotated_everything_section(result.get("everything_annotated_background"),
                                            result.get("annotated_everything_commands")),
              *quantization_section(result),
              "## Limits of this run", "",
              *limits_of_scale(result),
              *seed_lines(result),
              *([] if any(r["model"] == "student: distill_teacher_prompts" for r in result["prompted"]) else
                ["- EdgeSAM's prompt-in-the-loop arm (`hard_prompts=teacher`) is implemented and tested but not run "
                 "here."]),
              "- The KL grid search of the PTQ calibration covers the decoder only.",
              "- torch.ao's int8 path quantizes Linear layers only; at this model size the per-call overhead of "
              "dynamic quantization eats its gain. Neither it nor onnxruntime's path quantizes convolutions "
              "(TinyViT's stem and MBConv stages)" + ("; onnxruntime's integer convolutions were slower than float "
                                                      "ones here (int8 schemes table)." if result.get("int8_variants")
                                                      else ".")
              + (" Inductor's static path quantizes them, the encoder only." if "int8_cpu_speedup_inductor" in s
                 else ""),
              "", "## Figures", ""]
    parts += [f"![{name}]({name})" for name in figures]
    parts += ["", "`tinysam_point_prompts.png`: image, teacher, distilled student (one centre point per instance, "
              "white dots), ground truth. `tinysam_everything.png`: grid and hierarchical everything mode on a test "
              "image, grid mode on coins." + (" `tinysam_clicks.png`: the click-curve table above as lines."
                                              if "tinysam_clicks.png" in figures else "")
              + (" `tinysam_sampler.png`: the sampler's distance to the GT boundary for every point index; "
                 "`tinysam_hard_mask_weights.png`: the H_i histograms (share of masks per bin)."
                 if "tinysam_sampler.png" in figures else ""), "",
              "## JSON summary", "", "```json", json.dumps(s, indent=1), "```", ""]
    return "\n".join(parts)
