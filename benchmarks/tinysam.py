"""TinySAM benchmark on CPU: distillation arms, hierarchical vs grid everything mode, PTQ (fake W8A8 and real int8).

Everything is trained in this run on the procedural ShapesSA set (no SAM weights or SA-1B offline): a ViT teacher
trained on ground truth, then TinyViT students with the same step budget (the spec's arms): GT only, MobileSAM's
encoder-only distillation, full-stage distillation with random prompts, with TinySAM's hard prompt sampling (without
and with hard mask weighting) and with EdgeSAM's prompt-in-the-loop; then diagnostics of the first seed's models.
Writes docs/benchmarks/tinysam.md (+ PNGs) and docs/benchmarks/tinysam.json.

    python benchmarks/tinysam.py            # default run (about 195 min on 2 cores; 3 seeds per student arm)
    python benchmarks/tinysam.py --quick    # smoke run (a few minutes)
    python benchmarks/tinysam.py --bounds-only      # re-measure the bounds and int8 speed into the report (5 min)
    python benchmarks/tinysam.py --everything-only  # retrain the teacher, re-measure everything mode (15 min)
    python benchmarks/tinysam.py --annotated-everything-only  # everything mode with annotated background (20 min)
    python benchmarks/tinysam.py --annotated-everything-only --annotated-teacher-steps 15000 --annotated-teacher-seed 1
                                            # the same with a longer-trained teacher of another seed (40 min)
    python benchmarks/tinysam.py --annotated-everything-only --annotated-teacher-steps 30000  # (about 110 min)
    python benchmarks/tinysam.py --prompted-only    # retrain teacher + students, re-measure prompted tables (140 min)
    python benchmarks/tinysam.py --prompted-only --arms distill_encoder_only,distill_hard_prompts  # some arms only
    python benchmarks/tinysam.py --trained-full-size-only  # train the full-size layout, int8 speed + mIoU (40 min)
    python benchmarks/tinysam.py --trained-full-size-only --trained-full-size-seed 1  # a repeat, another seed
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from slimlab.core.io import atomic_write_text
from slimlab.core.machine import describe_machine
from slimlab.sam.build import build_model
from slimlab.sam.evaluate import prompted_ious
from slimlab.sam.everything import MaskGenerator
from slimlab.sam.mask_utils import overlay
from slimlab.sam.shapes import ShapesDataset, ShapesSample
from slimlab.sam.train import teacher_embeddings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tinysam_bounds import hierarchical_call_bound, int8_speedup_ceiling  # noqa: E402
from tinysam_everything import (  # noqa: E402
    EVERYTHING_FILTERS,
    annotated_background_everything,
    everything_arms,
    everything_summary,
)
from tinysam_prompted import (  # noqa: E402
    ARMS,
    DEBIAN_SCENE_TEXT,
    check_reproduced,
    diagnostics_plots,
    first_seed_diagnostics,
    prompted_evaluation,
    prompted_plots,
    prompted_summary,
    skimage_samples,
    train_student_arms,
    train_teacher,
)
from tinysam_quant import (ONNX_INT8_WEIGHTS, full_size_int8_measurements, full_size_summary,  # noqa: E402
                           quantization_rows, quantization_summary)
from tinysam_report import render_markdown  # noqa: E402
from tinysam_trained_full_size import trained_full_size_int8, trained_full_size_summary  # noqa: E402

BEST_ARM = "distill_hard_prompts"  # the student the quantization table and the overlays use
SETTINGS = {
    "default": {"train_images": 400, "test_images": 40, "teacher_steps": 3000, "student_steps": 3000,
                "seeds": [0, 1, 2], "everything_images": 40, "calibration_images": 8, "search_candidates": 8},
    "quick": {"train_images": 32, "test_images": 8, "teacher_steps": 6, "student_steps": 4,
              "seeds": [0], "everything_images": 2, "calibration_images": 2, "search_candidates": 2},
}


def save_overlays(models: dict, sample: ShapesSample, everything: dict, out_dir: Path) -> list[str]:
    """One PNG per model: point-prompt masks of every instance; plus everything-mode overlays."""
    from slimlab.sam.evaluate import center_points, predict_masks
    names = []
    tiles = [sample.image]
    for model in models.values():
        with torch.no_grad():
            embeddings = model.encode(model.preprocess(torch.from_numpy(sample.image).permute(2, 0, 1)[None].float()))
            predicted = predict_masks(model, embeddings, sample.masks, "point", 1, torch.Generator().manual_seed(0))
        shown = overlay(sample.image, list(predicted.numpy()))
        for x, y in center_points(sample.masks):
            cv2.circle(shown, (int(x), int(y)), 2, (255, 255, 255), -1)
        tiles.append(shown)
    tiles.append(overlay(sample.image, list(sample.masks)))
    grid = np.concatenate([cv2.resize(t, (256, 256), interpolation=cv2.INTER_NEAREST) for t in tiles], axis=1)
    cv2.imwrite(str(out_dir / "tinysam_point_prompts.png"), grid[:, :, ::-1])
    names.append("tinysam_point_prompts.png")
    tiles = [cv2.resize(overlay(image, masks), (256, 256), interpolation=cv2.INTER_NEAREST)
             for image, masks in everything.values()]
    cv2.imwrite(str(out_dir / "tinysam_everything.png"), np.concatenate(tiles, axis=1)[:, :, ::-1])
    names.append("tinysam_everything.png")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--teacher-steps", type=int)
    parser.add_argument("--student-steps", type=int)
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the student arms (default 0 1 2)")
    parser.add_argument("--scene-text", default=str(DEBIAN_SCENE_TEXT) if DEBIAN_SCENE_TEXT.is_dir() else None,
                        help="opencv-doc's examples/text folder (segmented scene-text words with masks) for a second "
                             "real sanity set; default: the Debian install path when present, else skipped")
    parser.add_argument("--bounds-only", action="store_true",
                        help="re-measure what needs no trained model (int8 and hierarchical-mode bounds, full-size int8 "
                             "latency) into an existing tinysam.json and rewrite the report")
    parser.add_argument("--annotated-everything-only", action="store_true",
                        help="train a teacher on ShapesSA with annotated background regions (about 8 min) and measure "
                             "the everything-mode arms on 40 images of that set (about 12 min) into an existing "
                             "tinysam.json, then rewrite the report")
    parser.add_argument("--annotated-teacher-steps", type=int,
                        help="with --annotated-everything-only: the teacher's steps (default: the stored run's)")
    parser.add_argument("--annotated-teacher-seed", type=int, default=0,
                        help="with --annotated-everything-only: the teacher's seed (initialisation, batches; default "
                             "0, the full run's); another seed is stored beside it")
    parser.add_argument("--quantization-only", action="store_true",
                        help="retrain the teacher and the first-seed hard-prompt student as the full run does (about "
                             "25 min) and re-measure the quantization table and the full-size int8 latency into an "
                             "existing tinysam.json; stops unless the stored models are reproduced")
    parser.add_argument("--trained-full-size-only", action="store_true",
                        help="train the full-size TinySAM layout on ShapesSA (128 px, then 1024 px) and measure its "
                             "inductor int8 encoder's speed-up and mIoU drop into the stored report (about 40 min)")
    parser.add_argument("--trained-full-size-seed", type=int, default=0,
                        help="with --trained-full-size-only: the training seed; seeds other than 0 are stored beside "
                             "seed 0's result (the headline), as a repeat")
    parser.add_argument("--everything-only", action="store_true",
                        help="retrain the teacher as the full run does (about 8 min) and re-measure the everything-mode "
                             "arms into an existing tinysam.json, then rewrite the report")
    parser.add_argument("--prompted-only", action="store_true",
                        help="retrain the teacher and every student arm as the full run does (about 140 min) and "
                             "re-measure the prompted tables (click curves included) into an existing tinysam.json; "
                             "stops unless the stored models are reproduced")
    parser.add_argument("--arms", help="with --prompted-only: comma-separated arms to train, the others keep their "
                                       "stored rows; an arm the stored run lacks is trained with every seed and "
                                       "added, a stored one with its first seed only (checked, for the first-seed "
                                       "tables and diagnostics)")
    args = parser.parse_args(argv)
    if args.scene_text and not Path(args.scene_text).is_dir():  # before the hour of training, not after
        parser.error(f"--scene-text {args.scene_text}: no such folder")
    torch.set_num_threads(args.threads)
    if args.bounds_only:
        return update_bounds(Path(args.out), 5 if args.quick else 50, args.quick)
    if args.everything_only:
        return update_everything(Path(args.out))
    if args.quantization_only:
        return update_quantization(Path(args.out), args.quick)
    if args.trained_full_size_only:
        return update_trained_full_size(Path(args.out), args.quick, args.trained_full_size_seed)
    if args.trained_full_size_seed:
        parser.error("--trained-full-size-seed applies to --trained-full-size-only")
    if args.prompted_only:
        return update_prompted(Path(args.out), args.scene_text, args.arms.split(",") if args.arms else None)
    if args.arms:
        parser.error("--arms applies to --prompted-only")
    if args.annotated_everything_only:
        return update_annotated_everything(Path(args.out), args.annotated_teacher_steps, args.annotated_teacher_seed)
    if args.annotated_teacher_steps or args.annotated_teacher_seed:
        parser.error("--annotated-teacher-steps and --annotated-teacher-seed apply to --annotated-everything-only")
    settings = dict(SETTINGS["quick" if args.quick else "default"])
    if args.teacher_steps:
        settings["teacher_steps"] = args.teacher_steps
    if args.student_steps:
        settings["student_steps"] = args.student_steps
    if args.seeds:
        settings["seeds"] = args.seeds
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = public_command("python benchmarks/tinysam.py " + " ".join(sys.argv[1:] if argv is None else argv))
    started = time.perf_counter()
    teacher, teacher_log, train, test = train_teacher(settings)
    cached = teacher_embeddings(teacher, train)
    seed_rows, students, logs = train_student_arms(teacher, cached, train, test, settings)
    logs["teacher"] = teacher_log
    print("== prompted evaluation", flush=True)
    rows, skimage_rows, scene_text = prompted_evaluation(teacher, students, seed_rows, test, settings, args.scene_text)
    diagnostics = first_seed_diagnostics(teacher, students, test)
    best_name = BEST_ARM
    sanity = skimage_samples(teacher.image_size)

    print("== everything mode", flush=True)
    everything_samples = [test[i] for i in range(settings["everything_images"])] + sanity[:1]
    everything_rows = everything_arms(teacher, everything_samples)
    annotated = annotated_background_everything(settings, settings["teacher_steps"])

    print("== quantization", flush=True)
    calibration = ShapesDataset(settings["calibration_images"], "calib")
    quant_rows = quantization_rows(students[best_name], test, [calibration[i] for i in range(len(calibration))],
                                   settings["search_candidates"])
    print("== full-size int8 latency", flush=True)
    full_size = full_size_int8_measurements(args.quick)
    print("== trained full-size int8", flush=True)
    trained_full_size = trained_full_size_int8(args.quick)
    profile = int8_speedup_ceiling("shapes_student", 5 if args.quick else 50)
    call_bound = hierarchical_call_bound(everything_samples)

    figures = save_overlays({"teacher": teacher, "student": students[best_name]}, test[0],
                            {"grid": (everything_samples[0].image, [r["segmentation"] for r in MaskGenerator(
                                teacher, **EVERYTHING_FILTERS).generate(everything_samples[0].image)]),
                             "hierarchical": (everything_samples[0].image, [r["segmentation"] for r in MaskGenerator(
                                 teacher, hierarchical=True, high_score_thresh=2.0, **EVERYTHING_FILTERS).generate(
                                 everything_samples[0].image)]),
                             "coins": (sanity[0].image, [r["segmentation"] for r in MaskGenerator(
                                 teacher, **EVERYTHING_FILTERS).generate(sanity[0].image)])}, out_dir)
    figures += prompted_plots(rows, out_dir) + diagnostics_plots(diagnostics, out_dir)

    summary = {
        **prompted_summary(rows),
        **everything_summary(everything_rows),
        **everything_summary(annotated["rows"], annotated_suffix(annotated, settings)),
        **quantization_summary(quant_rows),
        **full_size_summary(full_size),
        **trained_full_size_summary(trained_full_size),
        **bound_summary(profile, call_bound),
    }
    result = {"summary": summary, "settings": settings, "machine": describe_machine(), "command": command,
              "seconds": time.perf_counter() - started, "prompted": rows, "skimage_sanity": skimage_rows,
              "scene_text_sanity": scene_text, "first_seed_diagnostics": diagnostics,
              "everything": everything_rows,
              "everything_annotated_background": {annotated_key(annotated): annotated},
              "quantization": quant_rows, **full_size, "trained_full_size_int8": trained_full_size,
              "int8_profile": profile, "hierarchical_bound": call_bound, "figures": figures,
              "onnx_int8_weights": ONNX_INT8_WEIGHTS,
              "final_losses": {k: v[-1]["loss"] for k, v in logs.items() if v}}
    write_report(out_dir, result)
    print(json.dumps(summary, indent=1))
    return 0


def public_command(command: str) -> str:
    """Where opencv-doc was unpacked is this machine's business: the report shows it as a placeholder."""
    return re.sub(r"\S+(?=/usr/share/doc/opencv-doc/)", "<opencv-doc>", command)


def bound_summary(profile: dict, call_bound: dict) -> dict:
    return {"int8_speedup_ceiling_weight_products": profile["ceiling_weight_products"],
            "int8_speedup_ceiling_matmul_gemm": profile["ceiling_matmul_gemm"],
            "int8_speedup_ceiling_matmul_gemm_conv": profile["ceiling_matmul_gemm_conv"],
            "int8_product_kernel_speedup": profile.get("int8_product_kernel_speedup"),
            "hierarchical_call_reduction_ceiling": call_bound["max_call_reduction"]}


def write_report(out_dir: Path, result: dict) -> None:
    atomic_write_text(out_dir / "tinysam.json", json.dumps(result, indent=1))
    atomic_write_text(out_dir / "tinysam.md", render_markdown(result, result["figures"]))


def stored_result(out_dir: Path) -> dict:
    """The stored run a partial re-measurement updates."""
    path = out_dir / "tinysam.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no benchmark result to update; run the full benchmark first")
    return json.loads(path.read_text())


def settings_for_update(result: dict) -> dict:
    """The stored run's settings for a partial re-measurement, with today's everything-mode image count (up to the
    stored test set): a run stored with fewer images is measured again on as many as a full run uses now."""
    stored = result["settings"]
    return {**stored, "everything_images": min(SETTINGS["default"]["everything_images"], stored["test_images"])}


def update_bounds(out_dir: Path, runs: int, quick: bool) -> int:
    """Re-measure what needs no trained model (the int8 and hierarchical bounds, the full-size int8 latency) into
    an existing report."""
    result = stored_result(out_dir)
    settings = result["settings"]
    samples = ShapesDataset(settings["test_images"], "test")
    size = build_model("shapes_teacher", device="meta").image_size
    everything_samples = [samples[i] for i in range(settings["everything_images"])] + skimage_samples(size)[:1]
    result["int8_profile"] = int8_speedup_ceiling("shapes_student", runs)
    result["hierarchical_bound"] = hierarchical_call_bound(everything_samples)
    result.update(full_size_int8_measurements(quick))
    result["summary"].update(bound_summary(result["int8_profile"], result["hierarchical_bound"]))
    result["summary"].update(full_size_summary(result))
    result["bounds_command"] = "python benchmarks/tinysam.py --bounds-only"
    write_report(out_dir, result)
    print(json.dumps({k: result[k] for k in ("int8_profile", "hierarchical_bound", "full_size_int8",
                                             "full_size_int8_profile", "int8_variants")}, indent=1))
    return 0


def update_everything(out_dir: Path) -> int:
    """Retrain the teacher exactly as the full run does (seed, data, steps) and re-measure the everything-mode arms
    and the data bound on as many images as a full run uses now into an existing report; refuses when the teacher
    does not reproduce the stored one-point mIoU."""
    result = stored_result(out_dir)
    settings = settings_for_update(result)
    teacher, _, _, test = train_teacher(settings)
    check_reproduced({row["model"]: row for row in result["prompted"]}, "teacher (ViT)", 0,
                     float(prompted_ious(teacher, test, "point")["iou"].mean()), out_dir / "tinysam.json")
    print("== everything mode", flush=True)
    samples = [test[i] for i in range(settings["everything_images"])] + skimage_samples(teacher.image_size)[:1]
    result["everything"] = everything_arms(teacher, samples)
    result["hierarchical_bound"] = hierarchical_call_bound(samples)  # the bound on the arms' images
    result["settings"]["everything_images"] = settings["everything_images"]
    summary = {**everything_summary(result["everything"]),
               "hierarchical_call_reduction_ceiling": result["hierarchical_bound"]["max_call_reduction"]}
    result["summary"].update(summary)
    result["everything_command"] = "python benchmarks/tinysam.py --everything-only"
    write_report(out_dir, result)
    print(json.dumps(summary, indent=1))
    return 0


def update_quantization(out_dir: Path, quick: bool) -> int:
    """Retrain the teacher and the hard-prompt student's first seed exactly as the full run does and re-measure the
    quantization rows (every runtime) and the full-size int8 latency into an existing report."""
    path = out_dir / "tinysam.json"
    result = stored_result(out_dir)
    settings = result["settings"]
    stored = {row["model"]: row for row in result["prompted"]}
    teacher, _, train, test = train_teacher(settings)
    check_reproduced(stored, "teacher (ViT)", 0, float(prompted_ious(teacher, test, "point")["iou"].mean()), path)
    _, students, _ = train_student_arms(teacher, teacher_embeddings(teacher, train), train, test, settings, stored,
                                        path, [BEST_ARM])
    print("== quantization", flush=True)
    calibration = ShapesDataset(settings["calibration_images"], "calib")
    result["quantization"] = quantization_rows(students[BEST_ARM], test, [calibration[i] for i in
                                                                         range(len(calibration))],
                                               settings["search_candidates"])
    print("== full-size int8 latency", flush=True)
    result.update(full_size_int8_measurements(quick))
    result["summary"].update({**quantization_summary(result["quantization"]), **full_size_summary(result)})
    result["quantization_command"] = "python benchmarks/tinysam.py --quantization-only"
    write_report(out_dir, result)
    print(json.dumps(quantization_summary(result["quantization"]), indent=1))
    return 0


def update_trained_full_size(out_dir: Path, quick: bool, seed: int = 0) -> int:
    """Train the full-size layout and measure its int8 encoder (see tinysam_trained_full_size) into an existing
    report: seed 0 is the headline, another seed is stored beside it as a repeat."""
    result = stored_result(out_dir)
    measured = trained_full_size_int8(quick, seed)
    summary = trained_full_size_summary(measured)
    if seed == 0:
        result["trained_full_size_int8"] = measured
        result["summary"].update(summary)
        result["trained_full_size_command"] = "python benchmarks/tinysam.py --trained-full-size-only"
    else:
        result.setdefault("trained_full_size_int8_repeats", {})[str(seed)] = {
            **measured,
            "command": f"python benchmarks/tinysam.py --trained-full-size-only --trained-full-size-seed {seed}"}
    write_report(out_dir, result)
    print(json.dumps(summary, indent=1))
    return 0


def update_prompted(out_dir: Path, scene_text: str | None, arms: list[str] | None = None) -> int:
    """Retrain the teacher and the student arms (all, or ``arms``: see train_student_arms) exactly as the full run
    does and re-measure the prompted tables (click curves included) and the first-seed diagnostics into an existing
    report; arms the stored run lacks are added. Stops unless every model the stored run has is reproduced (its
    quantization and everything-mode sections describe those models)."""
    path = out_dir / "tinysam.json"
    result = stored_result(out_dir)
    settings = result["settings"]
    settings.pop("arms_teacher_prompt", None)  # runs stored before every spec arm ran by default
    stored = {row["model"]: row for row in result["prompted"]}
    teacher, teacher_log, train, test = train_teacher(settings)
    check_reproduced(stored, "teacher (ViT)", 0, float(prompted_ious(teacher, test, "point")["iou"].mean()), path)
    seed_rows, students, logs = train_student_arms(teacher, teacher_embeddings(teacher, train), train, test,
                                                   settings, stored, path, arms)
    print("== prompted evaluation", flush=True)
    rows, skimage_rows, scene_text_rows = prompted_evaluation(teacher, students, seed_rows, test, settings,
                                                              scene_text)
    if arms is not None:  # stored arms keep their all-seed rows; new arms join in the spec's order
        rows = merged_by_model(result["prompted"], [row for row in rows if row["model"] not in stored])
        skimage_rows = merged_by_model(result["skimage_sanity"], skimage_rows)
        scene_text_rows = merged_by_model(result.get("scene_text_sanity") or [], scene_text_rows or []) or None
    result["prompted"], result["skimage_sanity"] = rows, skimage_rows
    if scene_text_rows is not None:
        result["scene_text_sanity"] = scene_text_rows
    diagnostics = first_seed_diagnostics(teacher, students, test)
    result["first_seed_diagnostics"] = (merged_by_model(result.get("first_seed_diagnostics", {}), diagnostics)
                                        if arms is not None else diagnostics)
    result["summary"].update(prompted_summary(rows))
    result["final_losses"] = {**(result.get("final_losses", {}) if arms is not None else {}),
                              "teacher": teacher_log[-1]["loss"],
                              **{name: log[-1]["loss"] for name, log in logs.items() if log}}
    figures = prompted_plots(rows, out_dir) + diagnostics_plots(result["first_seed_diagnostics"], out_dir)
    result["figures"] += [name for name in figures if name not in result["figures"]]
    command = "python benchmarks/tinysam.py --prompted-only" + (f" --arms {','.join(arms)}" if arms else "") + (
        f" --scene-text {scene_text}" if scene_text else "")
    # a run of some arms adds to the record of a run of all of them, not over it
    result["prompted_arms_command" if arms else "prompted_command"] = public_command(command)
    write_report(out_dir, result)
    print(json.dumps(prompted_summary(rows), indent=1))
    return 0


def merged_by_model(stored, fresh):
    """Rows (dicts with "model") or a {model: entry} dict: fresh entries replace stored ones of the same model;
    the result is ordered teacher first, then the arms in ARMS order (names outside both last)."""
    def rank(model: str) -> int:
        names = ["teacher", "teacher (ViT)"] + [name for arm in ARMS for name in (arm, f"student: {arm}")]
        return names.index(model) // 2 if model in names else len(names)
    if isinstance(stored, dict):
        return dict(sorted({**stored, **fresh}.items(), key=lambda item: rank(item[0])))
    by_model = {row["model"]: row for row in stored} | {row["model"]: row for row in fresh}
    return sorted(by_model.values(), key=lambda row: rank(row["model"]))


def annotated_key(annotated: dict) -> str:
    """Key of an annotated-background result in the stored run: its teacher's steps, and seed when not 0."""
    seed = annotated.get("teacher_seed", 0)
    return str(annotated["teacher_steps"]) + (f"_seed{seed}" if seed else "")


def annotated_suffix(annotated: dict, settings: dict) -> str:
    """Summary-key suffix of an annotated-background result: its teacher's step budget when not the run's, and its
    seed when not 0."""
    steps, seed = annotated["teacher_steps"], annotated.get("teacher_seed", 0)
    return ("_annotated_background" + ("" if steps == settings["teacher_steps"] else f"_{steps}_steps")
            + (f"_seed{seed}" if seed else ""))


def update_annotated_everything(out_dir: Path, teacher_steps: int | None, teacher_seed: int = 0) -> int:
    """Measure the everything-mode arms on ShapesSA with annotated background (a teacher trained on that set with
    the stored run's settings, or ``teacher_steps`` / ``teacher_seed``) into an existing report, next to other step
    budgets and seeds."""
    result = stored_result(out_dir)
    settings = settings_for_update(result)
    annotated = annotated_background_everything(settings, teacher_steps or settings["teacher_steps"], teacher_seed)
    result.setdefault("everything_annotated_background", {})[annotated_key(annotated)] = annotated
    summary = everything_summary(annotated["rows"], annotated_suffix(annotated, settings))
    result["summary"].update(summary)
    commands = result.setdefault("annotated_everything_commands", {})
    commands[annotated_key(annotated)] = "python benchmarks/tinysam.py --annotated-everything-only" + (
        f" --annotated-teacher-steps {teacher_steps}" if teacher_steps else "") + (
        f" --annotated-teacher-seed {teacher_seed}" if teacher_seed else "")
    write_report(out_dir, result)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
