"""Markdown report of the portable-GAN benchmark: tables, verdicts and sentences computed from its JSON."""

from __future__ import annotations

from portable_gan_arms import (ARM_TITLES, ARMS, EXTRA_RATIO_ARMS, FCN_METRICS, LABEL_TASKS, TASKS,
                               arm_title, beats_beyond_spread, grid_keys)

def findings(results: dict) -> list[str]:
    """Sentences computed from one task's numbers (no text depends on anything else)."""
    teacher, scratch, full, plain = (results[k] for k in ("teacher", "scratch", "distill_student_d",
                                                          "distill_no_student_d"))
    strong_pixel = results["distill_student_d_pix100"]
    gap = scratch["kid_mean"] - teacher["kid_mean"]
    closest = max((arm for arm in ARMS if arm in results), key=lambda arm: results[arm]["psnr_to_teacher_mean"])
    lines = [
        f"- Teacher vs scratch student: KID x1000 {1000 * teacher['kid_mean']:.1f} vs {1000 * scratch['kid_mean']:.1f} "
        f"(gap {1000 * gap:.1f}; scratch seed std {1000 * scratch['kid_std']:.1f}), PSNR {teacher['psnr_mean']:.2f} vs "
        f"{scratch['psnr_mean']:.2f} dB.",
        f"- Distilled with student D minus scratch: KID x1000 {1000 * (full['kid_mean'] - scratch['kid_mean']):+.1f} "
        f"(larger std {1000 * max(full['kid_std'], scratch['kid_std']):.1f}), PSNR "
        f"{full['psnr_mean'] - scratch['psnr_mean']:+.2f} dB; without student D: KID x1000 "
        f"{1000 * (plain['kid_mean'] - scratch['kid_mean']):+.1f}, PSNR {plain['psnr_mean'] - scratch['psnr_mean']:+.2f} dB.",
        f"- lambda_pix 100 (the spec's sweep value; pix2pix weighs its L1 100:1 against the GAN term) minus "
        f"scratch: KID x1000 {1000 * (strong_pixel['kid_mean'] - scratch['kid_mean']):+.1f} (larger std "
        f"{1000 * max(strong_pixel['kid_std'], scratch['kid_std']):.1f}), PSNR "
        f"{strong_pixel['psnr_mean'] - scratch['psnr_mean']:+.2f} dB (larger std "
        f"{max(strong_pixel['psnr_std'], scratch['psnr_std']):.2f})."]
    if "peer_gan_compression" in results:
        peer, no_triplet, pixel = (results[k] for k in ("peer_gan_compression", "distill_student_d_no_triplet",
                                                        "distill_pixel_only"))
        lines += [
            f"- GAN Compression-style peer minus scratch: KID x1000 {1000 * (peer['kid_mean'] - scratch['kid_mean']):+.1f} "
            f"(larger std {1000 * max(peer['kid_std'], scratch['kid_std']):.1f}), PSNR "
            f"{peer['psnr_mean'] - scratch['psnr_mean']:+.2f} dB; full method minus peer: KID x1000 "
            f"{1000 * (full['kid_mean'] - peer['kid_mean']):+.1f} (larger std "
            f"{1000 * max(full['kid_std'], peer['kid_std']):.1f}).",
            f"- Ablations against the full method (KID x1000): pixel term only "
            f"{1000 * (pixel['kid_mean'] - full['kid_mean']):+.1f}, no student D "
            f"{1000 * (plain['kid_mean'] - full['kid_mean']):+.1f}, student D without the triplet term "
            f"{1000 * (no_triplet['kid_mean'] - full['kid_mean']):+.1f} (positive: worse than the full method)."]
    if "distill_student_d_slice" in results:
        sliced, pruned = results["distill_student_d_slice"], results["scratch_slice"]
        lines.append(
            f"- Init slice: distilled with student D minus scratch: KID x1000 "
            f"{1000 * (sliced['kid_mean'] - scratch['kid_mean']):+.1f} (larger std "
            f"{1000 * max(sliced['kid_std'], scratch['kid_std']):.1f}), PSNR {sliced['psnr_mean'] - scratch['psnr_mean']:+.2f} "
            f"dB; minus the sliced teacher retrained on ground truth: KID x1000 "
            f"{1000 * (sliced['kid_mean'] - pruned['kid_mean']):+.1f} (larger std "
            f"{1000 * max(sliced['kid_std'], pruned['kid_std']):.1f}), PSNR {sliced['psnr_mean'] - pruned['psnr_mean']:+.2f} dB.")
    if "input_images" in results:
        floor = results["input_images"]
        lines.append(
            f"- The input itself as the output (global skip with a zero correction): KID x1000 "
            f"{1000 * floor['kid']:.1f}, PSNR {floor['psnr']:.2f} dB; the teacher moves KID by "
            f"{1000 * (teacher['kid_mean'] - floor['kid']):+.1f} and PSNR by {teacher['psnr_mean'] - floor['psnr']:+.2f} dB, "
            f"the scratch student by {1000 * (scratch['kid_mean'] - floor['kid']):+.1f} and "
            f"{scratch['psnr_mean'] - floor['psnr']:+.2f} dB.")
    return lines + [
        f"- Closest to the teacher's outputs (PSNR to teacher): {ARM_TITLES[closest]} "
        f"({results[closest]['psnr_to_teacher_mean']:.2f} dB)."] + ([
        "- The teacher's own KID is worse than the scratch student's on this task, so a student that follows the "
        "teacher closely has no KID advantage to inherit; here distillation can only show on PSNR."] if gap < 0 else [])


def render_markdown(report: dict, grids: dict) -> str:
    s = report["settings"]
    sliced_tasks = report.get("tasks_with_slice_arms", len(report["tasks"]))
    lines = ["# Portable GANs: distillation with a student discriminator", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Wall time: {report['wall_minutes']:.1f} min, tasks trained in {report.get('parallel_task_processes', 1)} "
             "parallel processes (one torch thread each); CPU latency is measured after all training, one thread, "
             "but the cores may have been shared with other jobs (MACs and params are exact)" + "".join(
                 f"; {', '.join(rerun['tasks'])} rerun alone on {rerun['date']} ({rerun['wall_minutes']:.1f} min, "
                 f"`{rerun.get('command', '--tasks')}`), the other tasks' figures from the full run"
                 for rerun in report.get("partial_reruns", [])) + reuse_sentence(report), "",
             f"Teacher: ResNet generator ngf {s['ngf']}, {s['n_blocks']} blocks, {s['teacher_steps']} steps (seed 0, "
             f"trained once per task; pix2pix on paired tasks, CycleGAN on unpaired ones). Students: width ratio "
             f"{s['ratio']}, {s['student_steps']} steps each, batch {s['batch_size']}, seeds {s['seeds']}; on an "
             "unpaired task every arm trains both directions and the A -> B generator is scored. Test split: paired "
             "tasks, crops of 4 source images never seen in training; unpaired, held-out scenes scored against "
             "their hidden B versions.",
             "", f"KID/FID features: {report['feature_network']}. They rank models on one task; they are not "
             "Inception numbers and cannot be compared with published FID/KID. Every task's test outputs are "
             "aligned with their targets (paired tasks, and the unpaired task's hidden targets), so each KID subset "
             "takes its real and its generated images from disjoint halves of the test set: an output never meets "
             "its own target, whose similarity would pull KID below zero in proportion to per-image fidelity (runs "
             "before 2026-11-29 carried that bias; see `kid_from_features`).", "",
             f"**teacher_over_student_macs = {report['teacher_over_student_macs']:.2f}**; "
             f"**tasks where the distilled student beats scratch beyond the seed spread (KID) = "
             f"{report['tasks_where_distilled_beats_scratch_beyond_spread']} / {len(report['tasks'])}** at width "
             f"ratio {s['ratio']} (PSNR: {report['tasks_where_distilled_beats_scratch_beyond_spread_psnr']} / "
             f"{len(report['tasks'])})" + (
                 "".join(f", **{summary['tasks_where_distilled_beats_scratch_beyond_spread']} / "
                         f"{len(report['tasks'])} at the spec's ratio {ratio}** "
                         f"({summary['teacher_over_student_macs']:.1f}x fewer MACs)"
                         for ratio, summary in report.get("extra_ratios", {}).items())) + "; "
             f"with lambda_pix 100: {report['tasks_where_distilled_pix100_beats_scratch_beyond_spread']} / "
             f"{len(report['tasks'])} (KID) and {report['tasks_where_distilled_pix100_beats_scratch_beyond_spread_psnr']}"
             f" / {len(report['tasks'])} (PSNR); "
             f"with init slice: {report['tasks_where_distilled_slice_beats_scratch_beyond_spread']} / "
             f"{sliced_tasks} (KID) and {report['tasks_where_distilled_slice_beats_scratch_beyond_spread_psnr']}"
             f" / {sliced_tasks} (PSNR) against scratch, "
             f"{report['tasks_where_distilled_slice_beats_sliced_retrained_beyond_spread']} / {sliced_tasks} "
             f"(KID) against the sliced teacher retrained on ground truth; "
             f"student D better than no student D on KID mean in "
             f"{report['tasks_where_student_d_beats_no_student_d_kid']} / {len(report['tasks'])} tasks" + (
                 f"; against the GAN Compression-style peer (KID): the full method better beyond the spread on "
                 f"{report['tasks_where_distilled_beats_peer_beyond_spread']} / {len(report['tasks'])} tasks, the "
                 f"peer better on {report['tasks_where_peer_beats_distilled_beyond_spread']}, the peer better than "
                 f"scratch on {report['tasks_where_peer_beats_scratch_beyond_spread']}"
                 if "tasks_where_distilled_beats_peer_beyond_spread" in report else "") + (
                 f"; on the label task's downstream segmenter mIoU: "
                 f"{report['label_tasks_where_distilled_beats_scratch_beyond_spread_fcn_miou']} / "
                 f"{sum(task in LABEL_TASKS for task in report['tasks'])}" + (
                     f", on KID over the segmenter's features: "
                     f"{report['label_tasks_where_distilled_beats_scratch_beyond_spread_segmenter_kid']} / "
                     f"{sum(task in LABEL_TASKS for task in report['tasks'])}"
                     if "label_tasks_where_distilled_beats_scratch_beyond_spread_segmenter_kid" in report else "")
                 if "label_tasks_where_distilled_beats_scratch_beyond_spread_fcn_miou" in report else "") + (
                 f"; with the student D started from the teacher's D: "
                 f"{report['tasks_where_teacher_d_start_beats_scratch_beyond_spread']} / {len(report['tasks'])} "
                 f"(KID) and {report['tasks_where_teacher_d_start_beats_scratch_beyond_spread_psnr']} / "
                 f"{len(report['tasks'])} (PSNR), better than the full method's KID mean on "
                 f"{report['tasks_where_teacher_d_start_beats_full_method_kid_mean']} / {len(report['tasks'])}"
                 if "tasks_where_teacher_d_start_beats_scratch_beyond_spread" in report else "") + (
                 "".join(f"; at width ratio {ratio} ({summary['teacher_over_student_macs']:.1f}x fewer MACs): the full "
                         f"method beats scratch beyond the spread on "
                         f"{summary['tasks_where_distilled_beats_scratch_beyond_spread']} / {len(report['tasks'])} "
                         f"(KID), {summary['tasks_where_distilled_beats_scratch_beyond_spread_psnr']} / "
                         f"{len(report['tasks'])} (PSNR), with the teacher-D start "
                         f"{summary['tasks_where_teacher_d_start_beats_scratch_beyond_spread']} / {len(report['tasks'])}"
                         for ratio, summary in report.get("extra_ratios", {}).items())) + ".", ""]
    for task, results in report["tasks"].items():
        lines += [f"## {task}: {TASKS[task]}", "",
                  "| method | KID x1000 | FID | PSNR dB | SSIM | PSNR to teacher | params | MMACs | MB | CPU ms (1 thread) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        arms = tuple(arm for arm in ARMS if arm in results)
        lines += [arm_row(arm, results[arm]) for arm in ("teacher", *arms)]
        if "target_images" in results:
            r = results["target_images"]
            lines.append(f"| ground truth as output (a perfect generator: this test set's floor) | "
                         f"{1000 * r['kid']:.2f} | {max(r['fid'], 0.0):.2f} | - | - | - | - | - | - | - |")
        if "input_images" in results:
            r = results["input_images"]
            lines.append(f"| input as output (no network) | {1000 * r['kid']:.2f} | {r['fid']:.2f} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.3f} | - | 0 | 0 | 0 | 0 |")
        verdict = "yes" if beats_beyond_spread(results, "kid", True) else "no"
        sliced = (f"; with init slice: **{'yes' if beats_beyond_spread(results, 'kid', True, 'distill_student_d_slice') else 'no'}**"
                  if "distill_student_d_slice" in results else "")
        teacher_d = (f"; with its student D started from the teacher's D: **"
                     f"{'yes' if beats_beyond_spread(results, 'kid', True, 'distill_student_d_teacher_d') else 'no'}**"
                     if "distill_student_d_teacher_d" in results else "")
        lines += ["", f"At width ratio {s['ratio']}, distilled (student D) beats scratch on KID by more than the "
                  f"larger seed std: **{verdict}**"
                  f"{sliced}{teacher_d}.", "",
                  *findings(results), "",
                  *(line for ratio in report.get("extra_ratios", {}) for line in ratio_table(results, float(ratio))),
                  *downstream_table(task, results),
                  f"![{task} KID](portable_gan_{task}_kid.png) ![{task} PSNR](portable_gan_{task}_psnr.png)", "",
                  f"Columns: input, target, teacher, then {', '.join(arm_title(key) for key in grid_keys(task, s))} "
                  f"(seed {s['seeds'][0]}):", "", f"![{task} grid]({grids[task].name})", ""]
    return "\n".join(lines)


def arm_row(key: str, r: dict) -> str:
    """One markdown table row of an arm's figures (mean +- std over seeds) and cost."""
    c = r["cost"]
    fidelity = f"{r['psnr_to_teacher_mean']:.2f} +- {r['psnr_to_teacher_std']:.2f}" if key != "teacher" else "-"
    return (f"| {arm_title(key)} | {1000 * r['kid_mean']:.2f} +- {1000 * r['kid_std']:.2f} | "
            f"{r['fid_mean']:.2f} +- {r['fid_std']:.2f} | {r['psnr_mean']:.2f} +- {r['psnr_std']:.2f} | "
            f"{r['ssim_mean']:.3f} +- {r['ssim_std']:.3f} | {fidelity} | {c['params']:,} | "
            f"{c['macs'] / 1e6:.1f} | {c['size_mb']:.2f} | {c['latency_ms']:.2f} |")


def ratio_table(results: dict, ratio: float) -> list[str]:
    """The arms trained again at width ``ratio``, with their verdicts against scratch at that width."""
    keys = [f"{arm}@{ratio}" for arm in EXTRA_RATIO_ARMS if f"{arm}@{ratio}" in results]
    if not keys:
        return []
    macs = results["teacher"]["cost"]["macs"] / results[keys[0]]["cost"]["macs"]
    lines = [f"At the spec's width ratio {ratio} ({macs:.1f}x fewer MACs than the teacher):", "",
             "| method | KID x1000 | FID | PSNR dB | SSIM | PSNR to teacher | params | MMACs | MB | CPU ms (1 thread) |",
             "|---|---|---|---|---|---|---|---|---|---|", *(arm_row(key, results[key]) for key in keys), ""]
    scratch = results[f"scratch@{ratio}"]
    for arm in ("distill_student_d", "distill_student_d_teacher_d"):
        key = f"{arm}@{ratio}"
        if key in results:
            r = results[key]
            verdict = "yes" if beats_beyond_spread(results, "kid", True, key, f"scratch@{ratio}") else "no"
            lines.append(f"- {arm_title(key)} minus scratch at the same width: KID x1000 "
                         f"{1000 * (r['kid_mean'] - scratch['kid_mean']):+.1f} (larger std "
                         f"{1000 * max(r['kid_std'], scratch['kid_std']):.1f}): beyond the spread **{verdict}**; PSNR "
                         f"{r['psnr_mean'] - scratch['psnr_mean']:+.2f} dB.")
    return lines + [""]


def reuse_sentence(report: dict) -> str:
    """How many training runs ``--reuse`` took from the work folder instead of training them (none: empty)."""
    runs = {task: sum(len(seeds) for seeds in arms.values()) for task, arms in report.get("reused_runs", {}).items()}
    if not any(runs.values()):
        return ""
    trained = ", ".join(f"{task} {count}" for task, count in runs.items() if count)
    return (f"; with --reuse, finished runs of identical settings were taken from the work folder instead of "
            f"retrained ({trained} runs; every training step is seeded, so a retrain gives the same networks), "
            "so the wall time is below a full run's")


def downstream_table(task: str, results: dict) -> list[str]:
    """Markdown lines of a label task's FCN-style scores (none for other tasks)."""
    if "real_images" not in results:
        return []
    real = results["real_images"]
    lines = ["Downstream (FCN-style) score: a segmenter (`slimlab.gan.fcn_score.LabelSegmenter`, seed 0) trained on "
             "the real training renderings only reads each generated test image; scores against the input label "
             "map; KID / FID on the segmenter trunk's features (per-channel mean and std, 128-d) against the real "
             "test renderings:", "",
             "| images | pixel acc | class acc | mIoU | KID x1000 (segmenter) | FID (segmenter) |",
             "|---|---|---|---|---|---|",
             f"| real renderings (ceiling) | {real['fcn_pixel_acc']:.3f} | {real['fcn_class_acc']:.3f} | "
             f"{real['fcn_miou']:.3f} | - | - |"]
    for arm in ("teacher", *(arm for arm in ARMS if arm in results)):
        r = results[arm]
        distances = (f" | {1000 * r['seg_kid_mean']:.2f} +- {1000 * r['seg_kid_std']:.2f} | "
                     f"{r['seg_fid_mean']:.3f} +- {r['seg_fid_std']:.3f}" if "seg_kid_mean" in r else " | - | -")
        lines.append(f"| {arm_title(arm)} | " + " | ".join(
            f"{r[f'{metric}_mean']:.3f} +- {r[f'{metric}_std']:.3f}" for metric in FCN_METRICS) + distances + " |")
    verdict = "yes" if beats_beyond_spread(results, "fcn_miou", False) else "no"
    full, scratch = results["distill_student_d"], results["scratch"]
    lines += ["", f"Distilled (student D) beats scratch on segmenter mIoU by more than the larger seed std: "
              f"**{verdict}** ({full['fcn_miou_mean'] - scratch['fcn_miou_mean']:+.3f}, larger std "
              f"{max(full['fcn_miou_std'], scratch['fcn_miou_std']):.3f})."]
    if "seg_kid_mean" in full:
        verdict = "yes" if beats_beyond_spread(results, "seg_kid", True) else "no"
        lines[-1] += (f" On KID over the segmenter's features: **{verdict}** (x1000 "
                      f"{1000 * (full['seg_kid_mean'] - scratch['seg_kid_mean']):+.2f}, larger std "
                      f"{1000 * max(full['seg_kid_std'], scratch['seg_kid_std']):.2f}).")
    return lines + ["", f"![{task} segmenter mIoU](portable_gan_{task}_fcn_miou.png)", ""]

