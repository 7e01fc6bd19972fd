"""Benchmark: portable-GAN distillation vs its baselines on four built-in tasks, 3 seeds, equal budgets.

Arms per task: the teacher (ResNet generator, trained once); a student of ``ratio`` width distilled with the
student discriminator (full method); the same student distilled without it (pixel + feature terms only), with
the pixel term only, and with the student discriminator but no triplet term; the full method at lambda_pix 100;
the spec's peer, GAN Compression-style distillation (L1 reconstruction x100, 1x1-conv MSE on the generators'
bottleneck activations, a discriminator started from the teacher's); the same student trained from scratch with
the teacher's own pix2pix recipe. Two more arms start the student from the
teacher's leading filters (``init=slice``): the full method, and the teacher's pix2pix recipe on the ground truth
(a pruned teacher retrained; it shows how much of a sliced student's gain is the distillation and how much the
inherited weights). All students get the same number of steps, batch size and seeds.

Tasks: three paired (edges -> photo, 4x super-resolution, and the spec's task L: colour-coded label maps -> textured
renderings, scored downstream by a segmenter trained on real renderings only (FCN-style pixel / class accuracy and
mIoU); teacher and scratch student trained with pix2pix) and the spec's unpaired task U (flat shapes -> striped
shapes; teacher and scratch student trained with CycleGAN, both directions; scored on the A -> B generator against
the hidden striped version of each test scene). The slice arms run on the paired tasks only: the teacher recipe
slices paired generators only.
Writes docs/benchmarks/portable_gan.md, .json and PNGs.

    python benchmarks/portable_gan.py            # default run (~90 min on 2 cores: tasks in 2 processes)
    python benchmarks/portable_gan.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from slimlab.core.config import load_config
from slimlab.core.image_tasks import LABEL_CLASSES, builtin_task
from slimlab.core.images import image_grid, write_image
from slimlab.core.io import atomic_write_text
from slimlab.core.machine import describe_machine
from slimlab.core.plots import bar_plot
from slimlab.gan.checkpoint import load_generator
from slimlab.gan.config import DistillConfig, TeacherConfig
from slimlab.gan.evaluate import cost, default_features, generate, load_test_split, quality
from slimlab.gan.fcn_score import label_task_scorer
from slimlab.gan.recipes.distill import distill
from slimlab.gan.recipes.teacher import train_teacher

# the unpaired task first: its CycleGAN runs take the longest, so the paired tasks share the other process
TASKS = {"shapes2stripes": "unpaired: flat-coloured shapes -> the same shapes with stripes (CycleGAN)",
         "edges2photo": "edges -> photo (Canny edge map to 64x64 photo crop)",
         "labels2texture": "labels -> image (colour-coded Voronoi label map to its textured rendering; "
                           "mini Cityscapes)",
         "sr4": "low-res -> high-res (4x bicubic-degraded crop to the crop; generators with a global skip)"}
TASK_MODES = {"shapes2stripes": "unpaired", "edges2photo": "paired", "labels2texture": "paired", "sr4": "paired"}
LABEL_TASKS = {"labels2texture": len(LABEL_CLASSES)}  # task -> classes: scored downstream by a segmenter
# tasks whose output refines the input: every generator (teacher, students) adds a correction to its input, as
# super-resolution networks do; the input itself is scored too, as the no-network floor
GLOBAL_SKIP_TASKS = ("sr4",)
ARMS = ("scratch", "distill_pixel_only", "distill_no_student_d", "distill_student_d_no_triplet", "distill_student_d",
        "distill_student_d_pix100", "peer_gan_compression", "scratch_slice", "distill_student_d_slice")
SLICE_ARMS = ("scratch_slice", "distill_student_d_slice")
ARM_TITLES = {"teacher": "teacher", "scratch": "student from scratch (task loss: pix2pix or CycleGAN)",
              "distill_pixel_only": "student distilled, pixel term only (no feature term, no student D)",
              "distill_no_student_d": "student distilled, no student D (pixel + feature)",
              "distill_student_d_no_triplet": "student distilled with student D, no triplet term",
              "distill_student_d": "student distilled with student D (full method)",
              "distill_student_d_pix100": "student distilled with student D, lambda_pix 100",
              "peer_gan_compression": "peer: GAN Compression-style (L1 recon x100, 1x1-conv activation MSE, "
                                      "D from the teacher's)",
              "scratch_slice": "sliced teacher retrained (pix2pix loss, init slice)",
              "distill_student_d_slice": "student distilled with student D, init slice"}
# DistillConfig fields of each distilled arm (the spec's arms 2-5 and 7, plus the lambda_pix sweep and init slice)
DISTILL_ARMS = {"distill_pixel_only": dict(student_discriminator=False, lambda_feat=0.0),
                "distill_no_student_d": dict(student_discriminator=False),
                "distill_student_d_no_triplet": dict(triplet=False),
                "distill_student_d": {},
                "distill_student_d_pix100": dict(lambda_pix=100.0),
                "peer_gan_compression": dict(method="gan_compression", lambda_pix=100.0),
                "distill_student_d_slice": dict(init="slice")}
METRICS = ("kid", "fid", "psnr", "ssim", "psnr_to_teacher", "fcn_pixel_acc", "fcn_class_acc", "fcn_miou", "seg_kid",
           "seg_fid")
FCN_METRICS = ("fcn_pixel_acc", "fcn_class_acc", "fcn_miou")


def task_arms(task: str) -> tuple[str, ...]:
    return ARMS if TASK_MODES[task] == "paired" else tuple(arm for arm in ARMS if arm not in SLICE_ARMS)


def generator_file(task: str) -> str:
    """The A -> B generator a recipe writes: G.pt (paired) or G_AB.pt (unpaired)."""
    return "G.pt" if TASK_MODES[task] == "paired" else "G_AB.pt"


def settings(quick: bool) -> dict:
    if quick:
        return {"teacher_steps": 20, "student_steps": 10, "seeds": [0, 1], "ngf": 16, "n_blocks": 6, "ratio": 0.375,
                "batch_size": 4, "latency_runs": 5, "segmenter_steps": 10}
    # the spec's CPU teacher (ResNet ngf 32, 6 blocks); 3,000 instead of its 4,000 steps to fit the CPU budget
    return {"teacher_steps": 3000, "student_steps": 600, "seeds": [0, 1, 2], "ngf": 32, "n_blocks": 6, "ratio": 0.375,
            "batch_size": 4, "latency_runs": 30, "segmenter_steps": 800}


def run_task(task: str, config: dict, work: Path, threads: int = 1) -> tuple[dict, dict]:
    """Train and score every arm of one task; returns (results, image samples). Cost is measured later."""
    torch.set_num_threads(threads)
    root, mode, generator_name = builtin_task(task), TASK_MODES[task], generator_file(task)
    common = dict(data=str(root), mode=mode, device="cpu", batch_size=config["batch_size"], log_every=50,
                  resume=False)
    skip = dict(global_skip=task in GLOBAL_SKIP_TASKS)  # distilled students inherit it from the teacher file
    teacher_dir = work / task / "teacher"
    started = time.perf_counter()
    train_teacher(load_config(TeacherConfig, out_dir=str(teacher_dir), steps=config["teacher_steps"],
                              ngf=config["ngf"], n_blocks=config["n_blocks"], seed=0, **skip, **common))
    teacher_seconds = time.perf_counter() - started
    teacher, spec = load_generator(teacher_dir / generator_name)
    inputs, targets = load_test_split(root, mode)
    features = default_features()
    teacher_out = generate(teacher, inputs)
    score, real_images = downstream(task, root, config, inputs, targets)
    results = {"teacher": {"seeds": [0], "runs": [quality(teacher_out, targets, features) | score(teacher_out)],
                           "train_seconds": teacher_seconds}}
    picks = sample_indices(len(inputs))
    samples = {"input": inputs[picks], "target": targets[picks], "teacher": teacher_out[picks]}
    student_ngf = spec.scaled(config["ratio"]).ngf
    for arm in task_arms(task):
        runs, seconds = [], []
        for seed in config["seeds"]:
            out_dir = work / task / f"{arm}-seed{seed}"
            started = time.perf_counter()
            if arm.startswith("scratch"):
                train_teacher(load_config(TeacherConfig, out_dir=str(out_dir), steps=config["student_steps"],
                                          ngf=student_ngf, n_blocks=config["n_blocks"], seed=seed,
                                          slice_from=str(teacher_dir / "G.pt") if arm == "scratch_slice" else "",
                                          **skip, **common))
            else:
                distill(load_config(DistillConfig, out_dir=str(out_dir), teacher=str(teacher_dir / generator_name),
                                    steps=config["student_steps"], ratio=config["ratio"], seed=seed,
                                    **DISTILL_ARMS[arm], **common))
            seconds.append(time.perf_counter() - started)
            student, _ = load_generator(out_dir / generator_name)
            outputs = generate(student, inputs)
            runs.append(quality(outputs, targets, features, teacher_out) | score(outputs))
            if seed == config["seeds"][0]:
                samples[arm] = outputs[picks]
        results[arm] = {"seeds": config["seeds"], "runs": runs, "train_seconds": statistics.mean(seconds)}
    for arm, entry in results.items():
        for metric in METRICS:
            values = [run[metric] for run in entry["runs"] if metric in run]
            if values:
                entry[f"{metric}_mean"] = statistics.mean(values)
                entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    if real_images:
        results["real_images"] = real_images  # the segmenter's score on the real test renderings: the ceiling
    if task in GLOBAL_SKIP_TASKS:
        results["input_images"] = quality(inputs, targets, features)  # the (bicubic) input as the output
    return results, samples


def downstream(task: str, root: Path, config: dict, inputs: torch.Tensor, targets: torch.Tensor):
    """(score, real-image scores) of ``label_task_scorer`` fitted on a label task's training pairs; other tasks
    have no downstream score."""
    if task not in LABEL_TASKS:
        return (lambda images: {}), {}
    train_inputs, train_targets = load_test_split(root, "paired", split="train")
    return label_task_scorer(train_inputs, train_targets, inputs, targets, LABEL_TASKS[task],
                             steps=config["segmenter_steps"])


def measure_cost(task: str, results: dict, task_work: Path, config: dict) -> None:
    """Params, MACs, size and single-thread CPU latency per arm (one generator per arm: every seed has the same
    architecture), measured after all training so no other benchmark process shares the cores."""
    folders = {"teacher": task_work / "teacher"}
    folders.update({arm: task_work / f"{arm}-seed{config['seeds'][0]}" for arm in task_arms(task)})
    for arm, folder in folders.items():
        generator, _ = load_generator(folder / generator_file(task))
        results[arm]["cost"] = cost(generator, 64, config["latency_runs"])


def sample_indices(count: int, rows: int = 6) -> list[int]:
    """Rows of the image grid, spread over the test split (it is sorted by source image)."""
    return list(range(0, count, max(1, count // rows)))[:rows]


def grid_from_runs(task: str, work: Path, seed: int) -> list[list[torch.Tensor]]:
    """Rebuild a task's image grid from the generators a finished run left in ``work``."""
    inputs, targets = load_test_split(builtin_task(task), TASK_MODES[task])
    picks = sample_indices(len(inputs))
    name = generator_file(task)
    columns = [inputs[picks], targets[picks], generate(load_generator(work / task / "teacher" / name)[0], inputs[picks])]
    columns += [generate(load_generator(work / task / f"{arm}-seed{seed}" / name)[0], inputs[picks])
                for arm in task_arms(task)]
    return [[column[i] for column in columns] for i in range(len(picks))]


def beats_beyond_spread(results: dict, metric: str, lower_is_better: bool, arm: str = "distill_student_d",
                        baseline: str = "scratch") -> bool:
    candidate, reference = results[arm], results[baseline]
    spread = max(candidate[f"{metric}_std"], reference[f"{metric}_std"])
    gain = reference[f"{metric}_mean"] - candidate[f"{metric}_mean"]
    return (gain if lower_is_better else -gain) > spread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--out", default="docs/benchmarks", help="folder for portable_gan.md / .json / PNGs")
    parser.add_argument("--work", default="runs/bench/portable_gan", help="folder for the training runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable when other processes share the cores)")
    parser.add_argument("--jobs", type=int, default=2, help="tasks trained in parallel processes")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated tasks to train; a subset replaces those tasks in the existing "
                             "portable_gan.json and keeps the others (recorded in the report)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite portable_gan.md from the existing portable_gan.json (no training)")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    if arguments.render_only:
        out = Path(arguments.out)
        report = json.loads((out / "portable_gan.json").read_text())
        grids = {task: out / f"portable_gan_{task}_grid.png" for task in report["tasks"]}
        for task in report["tasks"]:
            if (Path(arguments.work) / task / "teacher" / generator_file(task)).exists():
                write_image(grids[task], image_grid(grid_from_runs(task, Path(arguments.work),
                                                                   report["settings"]["seeds"][0])))
        atomic_write_text(out / "portable_gan.md", render_markdown(report, grids))
        return 0
    config = settings(arguments.quick)
    out, work = Path(arguments.out), Path(arguments.work)
    selected = [task.strip() for task in arguments.tasks.split(",") if task.strip()]
    unknown = sorted(set(selected) - set(TASKS))
    if unknown or not selected:
        parser.error(f"--tasks: unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    earlier = previous_report(out, config) if set(selected) != set(TASKS) else None
    started = time.perf_counter()
    tasks, grids = {}, {}
    # each task trains in its own process (one torch thread each); latency is measured afterwards, alone
    with ProcessPoolExecutor(arguments.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {task: pool.submit(run_task, task, config, work, arguments.threads) for task in selected}
        for task, future in futures.items():
            tasks[task], samples = future.result()
            print(f"== {task} trained", flush=True)
            rows = [[samples[key][i] for key in ("input", "target", "teacher", *task_arms(task))]
                    for i in range(len(samples["input"]))]
            grids[task] = out / f"portable_gan_{task}_grid.png"
            write_image(grids[task], image_grid(rows))
    for task, results in tasks.items():
        measure_cost(task, results, work / task, config)
    wall = time.perf_counter() - started
    if earlier is not None:  # a partial rerun: the other tasks keep the earlier run's figures, in TASKS order
        tasks = {task: tasks.get(task, earlier["tasks"].get(task)) for task in TASKS
                 if task in tasks or task in earlier["tasks"]}
        grids |= {task: out / f"portable_gan_{task}_grid.png" for task in tasks if task not in grids}
    report = summarise(tasks, config, arguments, wall if earlier is None else earlier["wall_minutes"] * 60)
    if earlier is not None:  # the report stays the full run's; the rerun is listed with its own command
        report["command"] = earlier["command"]
        report["parallel_task_processes"] = earlier.get("parallel_task_processes", 1)
        report["partial_reruns"] = earlier.get("partial_reruns", []) + [
            {"tasks": selected, "wall_minutes": wall / 60, "date": time.strftime("%Y-%m-%d"),
             "command": " ".join(["python benchmarks/portable_gan.py", *(argv if argv is not None else sys.argv[1:])])}]
    for metric in ("kid", "psnr"):
        for task, results in tasks.items():
            arms = ("teacher", *task_arms(task))
            bar_plot({arm: results[arm][f"{metric}_mean"] for arm in arms},
                     out / f"portable_gan_{task}_{metric}.png", f"{task}: {metric} (mean +- std over seeds)", metric,
                     errors={arm: results[arm][f"{metric}_std"] for arm in arms})
    for task in LABEL_TASKS:
        if task in tasks:
            arms = ("teacher", *task_arms(task))
            bar_plot({"real images": tasks[task]["real_images"]["fcn_miou"]}
                     | {arm: tasks[task][arm]["fcn_miou_mean"] for arm in arms},
                     out / f"portable_gan_{task}_fcn_miou.png", f"{task}: segmenter mIoU (mean +- std over seeds)",
                     "mIoU", errors={arm: tasks[task][arm]["fcn_miou_std"] for arm in arms})
    atomic_write_text(out / "portable_gan.json", json.dumps(report, indent=2))
    atomic_write_text(out / "portable_gan.md", render_markdown(report, grids))
    print(f"wrote {out / 'portable_gan.md'} in {wall / 60:.1f} min")
    return 0


def previous_report(out: Path, config: dict) -> dict:
    """The full run a partial rerun merges into; its settings must equal this run's."""
    path = out / "portable_gan.json"
    if not path.exists():
        raise SystemExit(f"--tasks with a subset needs an earlier full run's {path} to merge into")
    report = json.loads(path.read_text())
    if report["settings"] != config:
        raise SystemExit(f"--tasks: {path} was written with settings {report['settings']}, this run's are {config}")
    return report


def tally(tasks: dict, metric: str, lower_is_better: bool, arm: str = "distill_student_d",
          baseline: str = "scratch") -> int:
    """Tasks where ``arm`` beats ``baseline`` beyond the seed spread, among the tasks that ran both."""
    return sum(beats_beyond_spread(results, metric, lower_is_better, arm, baseline)
               for results in tasks.values() if arm in results and baseline in results)


def summarise(tasks: dict, config: dict, arguments, wall: float) -> dict:
    first = next(iter(tasks.values()))
    macs_ratio = first["teacher"]["cost"]["macs"] / first["distill_student_d"]["cost"]["macs"]
    command = "python benchmarks/portable_gan.py" + (" --quick" if arguments.quick else "") + (
        f" --threads {arguments.threads}" if arguments.threads != 1 else "") + (
        f" --jobs {arguments.jobs}" if arguments.jobs != 2 else "")
    return {
        "command": command, "machine": describe_machine(), "wall_minutes": wall / 60, "settings": config,
        "parallel_task_processes": arguments.jobs,
        "feature_network": "RandomConvFeatures(seed=1234): fixed random 4-stage conv net, mean+std per stage (480-d)",
        "tasks": tasks,
        "task_modes": {task: TASK_MODES[task] for task in tasks},
        "teacher_over_student_macs": macs_ratio,
        "tasks_where_distilled_beats_scratch_beyond_spread": tally(tasks, "kid", True),
        "tasks_where_distilled_beats_scratch_beyond_spread_psnr": tally(tasks, "psnr", False),
        "tasks_where_distilled_pix100_beats_scratch_beyond_spread": tally(tasks, "kid", True,
                                                                          "distill_student_d_pix100"),
        "tasks_where_distilled_pix100_beats_scratch_beyond_spread_psnr": tally(tasks, "psnr", False,
                                                                               "distill_student_d_pix100"),
        "tasks_where_peer_beats_scratch_beyond_spread": tally(tasks, "kid", True, "peer_gan_compression"),
        "tasks_where_distilled_beats_peer_beyond_spread": tally(tasks, "kid", True, "distill_student_d",
                                                                "peer_gan_compression"),
        "tasks_where_peer_beats_distilled_beyond_spread": tally(tasks, "kid", True, "peer_gan_compression",
                                                                "distill_student_d"),
        "tasks_with_slice_arms": sum("distill_student_d_slice" in results for results in tasks.values()),
        "tasks_where_distilled_slice_beats_scratch_beyond_spread": tally(tasks, "kid", True, "distill_student_d_slice"),
        "tasks_where_distilled_slice_beats_scratch_beyond_spread_psnr": tally(tasks, "psnr", False,
                                                                              "distill_student_d_slice"),
        "tasks_where_distilled_slice_beats_sliced_retrained_beyond_spread": tally(
            tasks, "kid", True, "distill_student_d_slice", "scratch_slice"),
        "label_tasks_where_distilled_beats_scratch_beyond_spread_fcn_miou": tally(
            {task: results for task, results in tasks.items() if task in LABEL_TASKS}, "fcn_miou", False),
        "label_tasks_where_distilled_beats_scratch_beyond_spread_segmenter_kid": tally(
            {task: results for task, results in tasks.items() if task in LABEL_TASKS}, "seg_kid", True),
        "tasks_where_student_d_beats_no_student_d_kid": sum(
            results["distill_student_d"]["kid_mean"] < results["distill_no_student_d"]["kid_mean"]
            for results in tasks.values()),
    }


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
                 for rerun in report.get("partial_reruns", [])), "",
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
             f"{report['tasks_where_distilled_beats_scratch_beyond_spread']} / {len(report['tasks'])}** "
             f"(PSNR: {report['tasks_where_distilled_beats_scratch_beyond_spread_psnr']} / {len(report['tasks'])}); "
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
                 if "label_tasks_where_distilled_beats_scratch_beyond_spread_fcn_miou" in report else "") + ".", ""]
    for task, results in report["tasks"].items():
        lines += [f"## {task}: {TASKS[task]}", "",
                  "| method | KID x1000 | FID | PSNR dB | SSIM | PSNR to teacher | params | MMACs | MB | CPU ms (1 thread) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        arms = tuple(arm for arm in ARMS if arm in results)
        for arm in ("teacher", *arms):
            r = results[arm]
            c = r["cost"]
            fidelity = f"{r['psnr_to_teacher_mean']:.2f} +- {r['psnr_to_teacher_std']:.2f}" if arm != "teacher" else "-"
            lines.append(f"| {ARM_TITLES[arm]} | {1000 * r['kid_mean']:.2f} +- {1000 * r['kid_std']:.2f} | "
                         f"{r['fid_mean']:.2f} +- {r['fid_std']:.2f} | {r['psnr_mean']:.2f} +- {r['psnr_std']:.2f} | "
                         f"{r['ssim_mean']:.3f} +- {r['ssim_std']:.3f} | {fidelity} | {c['params']:,} | "
                         f"{c['macs'] / 1e6:.1f} | {c['size_mb']:.2f} | {c['latency_ms']:.2f} |")
        if "input_images" in results:
            r = results["input_images"]
            lines.append(f"| input as output (no network) | {1000 * r['kid']:.2f} | {r['fid']:.2f} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.3f} | - | 0 | 0 | 0 | 0 |")
        verdict = "yes" if beats_beyond_spread(results, "kid", True) else "no"
        sliced = (f"; with init slice: **{'yes' if beats_beyond_spread(results, 'kid', True, 'distill_student_d_slice') else 'no'}**"
                  if "distill_student_d_slice" in results else "")
        lines += ["", f"Distilled (student D) beats scratch on KID by more than the larger seed std: **{verdict}**"
                  f"{sliced}.", "",
                  *findings(results), "", *downstream_table(task, results),
                  f"![{task} KID](portable_gan_{task}_kid.png) ![{task} PSNR](portable_gan_{task}_psnr.png)", "",
                  f"Columns: input, target, teacher, then {', '.join(ARM_TITLES[arm] for arm in arms)} "
                  f"(seed {s['seeds'][0]}):", "", f"![{task} grid]({grids[task].name})", ""]
    return "\n".join(lines)


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
        lines.append(f"| {ARM_TITLES[arm]} | " + " | ".join(
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


if __name__ == "__main__":
    sys.exit(main())
