"""Benchmark: portable-GAN distillation vs its baselines on four built-in tasks, 3 seeds, equal budgets.

Arms per task: the teacher (ResNet generator, trained once); a student of ``ratio`` width distilled with the
student discriminator (full method); the same student distilled without it (pixel + feature terms only), with
the pixel term only, and with the student discriminator but no triplet term; the full method at lambda_pix 100;
the spec's peer, GAN Compression-style distillation (L1 reconstruction x100, 1x1-conv MSE on the generators'
bottleneck activations, a discriminator started from the teacher's); the same student trained from scratch with
the teacher's own pix2pix recipe; the full method with its student discriminator started from the teacher's
discriminator (``student_d_init=teacher``). Two more arms start the student from the teacher's leading filters
(``init=slice``): the full method, and the teacher's pix2pix recipe on the ground truth
(a pruned teacher retrained; it shows how much of a sliced student's gain is the distillation and how much the
inherited weights). The scratch student, the full method with and without the student discriminator and the
teacher-D start run again at the spec's widths (``extra_ratios``: 1/4 and 1/2). All students get the same number of
steps, batch size and seeds. Tasks, arms and the verdict rule: ``portable_gan_arms.py``; the report:
``portable_gan_report.py``.

Tasks: three paired (edges -> photo, 4x super-resolution, and the spec's task L: colour-coded label maps -> textured
renderings, scored downstream by a segmenter trained on real renderings only (FCN-style pixel / class accuracy and
mIoU); teacher and scratch student trained with pix2pix) and the spec's unpaired task U (flat shapes -> striped
shapes; teacher and scratch student trained with CycleGAN, both directions; scored on the A -> B generator against
the hidden striped version of each test scene). The slice arms run on the paired tasks only: the teacher recipe
slices paired generators only.
Writes docs/benchmarks/portable_gan.md, .json and PNGs.

    python benchmarks/portable_gan.py            # default run (~2 hours on 2 cores: tasks in 2 processes)
    python benchmarks/portable_gan.py --quick    # smoke run
    python benchmarks/portable_gan.py --reuse    # train only what the work folder does not hold already
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from slimlab.core.config import load_config
from slimlab.core.image_metrics import kid_and_fid
from slimlab.core.image_tasks import builtin_task
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
from slimlab.gan.training import finished_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from portable_gan_arms import (DISTILL_ARMS, GLOBAL_SKIP_TASKS, LABEL_TASKS, METRICS,  # noqa: E402
                               TASK_MODES, TASKS, arm_plan, generator_file, grid_keys, tally, task_arms)
from portable_gan_report import render_markdown  # noqa: E402

def settings(quick: bool) -> dict:
    if quick:
        return {"teacher_steps": 20, "student_steps": 10, "seeds": [0, 1], "ngf": 16, "n_blocks": 6, "ratio": 0.375,
                "extra_ratios": [0.25, 0.5], "batch_size": 4, "latency_runs": 5, "segmenter_steps": 10}
    # the spec's CPU teacher (ResNet ngf 32, 6 blocks); 3,000 instead of its 4,000 steps to fit the CPU budget.
    # Every arm at ratio 0.375 (ngf 12, 6.4x fewer MACs); the main arms again at the spec's 1/4 and 1/2 (ngf 8, 16)
    return {"teacher_steps": 3000, "student_steps": 600, "seeds": [0, 1, 2], "ngf": 32, "n_blocks": 6, "ratio": 0.375,
            "extra_ratios": [0.25, 0.5], "batch_size": 4, "latency_runs": 30, "segmenter_steps": 800}


def run_task(task: str, config: dict, work: Path, threads: int = 1, reuse: bool = False) -> tuple[dict, dict]:
    """Train and score every arm of one task; returns (results, image samples). Cost is measured later."""
    torch.set_num_threads(threads)
    root, mode, generator_name = builtin_task(task), TASK_MODES[task], generator_file(task)
    common = dict(data=str(root), mode=mode, device="cpu", batch_size=config["batch_size"], log_every=50,
                  resume=False)
    skip = dict(global_skip=task in GLOBAL_SKIP_TASKS)  # distilled students inherit it from the teacher file
    teacher_dir = work / task / "teacher"
    started = time.perf_counter()
    teacher_reused = train(train_teacher, load_config(
        TeacherConfig, out_dir=str(teacher_dir), steps=config["teacher_steps"], ngf=config["ngf"],
        n_blocks=config["n_blocks"], seed=0, **skip, **common), reuse)
    teacher_seconds = None if teacher_reused else time.perf_counter() - started
    teacher, spec = load_generator(teacher_dir / generator_name)
    inputs, targets = load_test_split(root, mode)
    features = default_features()
    teacher_out = generate(teacher, inputs)
    score, real_images = downstream(task, root, config, inputs, targets)
    results = {"teacher": {"seeds": [0], "runs": [quality(teacher_out, targets, features) | score(teacher_out)],
                           "train_seconds": teacher_seconds, "reused_seeds": [0] if teacher_reused else []}}
    picks = sample_indices(len(inputs))
    samples = {"input": inputs[picks], "target": targets[picks], "teacher": teacher_out[picks]}
    for key, arm, ratio in arm_plan(task, config):
        runs, seconds, reused_seeds = [], [], []
        for seed in config["seeds"]:
            out_dir = run_folder(work / task, key, seed)
            started = time.perf_counter()
            if arm.startswith("scratch"):
                recipe, cfg = train_teacher, load_config(
                    TeacherConfig, out_dir=str(out_dir), steps=config["student_steps"], ngf=spec.scaled(ratio).ngf,
                    n_blocks=config["n_blocks"], seed=seed,
                    slice_from=str(teacher_dir / "G.pt") if arm == "scratch_slice" else "", **skip, **common)
            else:
                recipe, cfg = distill, load_config(
                    DistillConfig, out_dir=str(out_dir), teacher=str(teacher_dir / generator_name),
                    steps=config["student_steps"], ratio=ratio, seed=seed, **DISTILL_ARMS[arm], **common)
            if train(recipe, cfg, reuse):
                reused_seeds.append(seed)
            else:
                seconds.append(time.perf_counter() - started)
            student, _ = load_generator(out_dir / generator_name)
            outputs = generate(student, inputs)
            runs.append(quality(outputs, targets, features, teacher_out) | score(outputs))
            if seed == config["seeds"][0] and key in grid_keys(task, config):
                samples[key] = outputs[picks]
        results[key] = {"seeds": config["seeds"], "runs": runs, "ratio": ratio,
                        "train_seconds": statistics.mean(seconds) if seconds else None,
                        "reused_seeds": reused_seeds}
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
    # the targets as the output: a perfect generator's KID / FID on this test set and its subsets (not 0: KID's
    # estimator noise on 64 images; every arm's figure carries the same partition, so this is the floor to read
    # them against)
    results["target_images"] = kid_and_fid(features, targets, targets.clone(), paired=True)
    return results, samples


def run_folder(task_work: Path, key: str, seed: int) -> Path:
    """``<arm>-seed<N>`` at the main ratio, ``<arm>-r<ratio>-seed<N>`` at the extra ones."""
    arm, _, ratio = key.partition("@")
    return task_work / (f"{arm}-r{ratio}-seed{seed}" if ratio else f"{arm}-seed{seed}")


def train(recipe, cfg, reuse: bool) -> bool:
    """Run ``recipe(cfg)``; with ``reuse``, a finished run of the same settings in cfg.out_dir is resumed instead
    (no step left to train: it rewrites the same networks, since every step is seeded). True when reused."""
    reusable = reuse and finished_run(cfg)
    recipe(replace(cfg, resume=reusable))
    return reusable


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
    folders.update({key: run_folder(task_work, key, config["seeds"][0]) for key, _, _ in arm_plan(task, config)})
    for arm, folder in folders.items():
        generator, _ = load_generator(folder / generator_file(task))
        results[arm]["cost"] = cost(generator, 64, config["latency_runs"])


def sample_indices(count: int, rows: int = 6) -> list[int]:
    """Rows of the image grid, spread over the test split (it is sorted by source image)."""
    return list(range(0, count, max(1, count // rows)))[:rows]


def grid_from_runs(task: str, work: Path, config: dict) -> list[list[torch.Tensor]]:
    """Rebuild a task's image grid from the generators a finished run left in ``work`` (first seed)."""
    inputs, targets = load_test_split(builtin_task(task), TASK_MODES[task])
    picks = sample_indices(len(inputs))
    name = generator_file(task)
    columns = [inputs[picks], targets[picks], generate(load_generator(work / task / "teacher" / name)[0], inputs[picks])]
    columns += [generate(load_generator(run_folder(work / task, key, config["seeds"][0]) / name)[0], inputs[picks])
                for key in grid_keys(task, config)]
    return [[column[i] for column in columns] for i in range(len(picks))]


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
    parser.add_argument("--reuse", action="store_true",
                        help="reuse finished runs in --work whose settings equal this run's (every training step is "
                             "seeded, so they hold the networks a retrain gives); the report lists them")
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
                write_image(grids[task], image_grid(grid_from_runs(task, Path(arguments.work), report["settings"])))
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
        futures = {task: pool.submit(run_task, task, config, work, arguments.threads, arguments.reuse)
                   for task in selected}
        for task, future in futures.items():
            tasks[task], samples = future.result()
            print(f"== {task} trained", flush=True)
            rows = [[samples[key][i] for key in ("input", "target", "teacher", *grid_keys(task, config))]
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


def summarise(tasks: dict, config: dict, arguments, wall: float) -> dict:
    first = next(iter(tasks.values()))
    macs_ratio = first["teacher"]["cost"]["macs"] / first["distill_student_d"]["cost"]["macs"]
    extras = {str(ratio): ratio_summary(tasks, ratio) for ratio in config["extra_ratios"]}
    command = "python benchmarks/portable_gan.py" + (" --quick" if arguments.quick else "") + (
        f" --threads {arguments.threads}" if arguments.threads != 1 else "") + (
        f" --jobs {arguments.jobs}" if arguments.jobs != 2 else "") + (" --reuse" if arguments.reuse else "")
    return {
        "command": command, "machine": describe_machine(), "wall_minutes": wall / 60, "settings": config,
        "parallel_task_processes": arguments.jobs,
        "reused_runs": {task: {arm: entry["reused_seeds"] for arm, entry in results.items()
                               if isinstance(entry, dict) and entry.get("reused_seeds")}
                        for task, results in tasks.items()},
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
        "tasks_where_teacher_d_start_beats_scratch_beyond_spread": tally(tasks, "kid", True,
                                                                         "distill_student_d_teacher_d"),
        "tasks_where_teacher_d_start_beats_scratch_beyond_spread_psnr": tally(tasks, "psnr", False,
                                                                              "distill_student_d_teacher_d"),
        "tasks_where_teacher_d_start_beats_full_method_kid_mean": sum(
            results["distill_student_d_teacher_d"]["kid_mean"] < results["distill_student_d"]["kid_mean"]
            for results in tasks.values()),
        "extra_ratios": extras,
        "tasks_where_distilled_beats_scratch_beyond_spread_by_ratio": {
            str(config["ratio"]): tally(tasks, "kid", True)} | {
            ratio: summary["tasks_where_distilled_beats_scratch_beyond_spread"] for ratio, summary in extras.items()},
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


def ratio_summary(tasks: dict, ratio: float) -> dict:
    """The verdicts of the arms trained again at width ``ratio``."""
    first = next(iter(tasks.values()))
    return {"teacher_over_student_macs": first["teacher"]["cost"]["macs"]
            / first[f"distill_student_d@{ratio}"]["cost"]["macs"],
            "tasks_where_distilled_beats_scratch_beyond_spread": tally(
                tasks, "kid", True, f"distill_student_d@{ratio}", f"scratch@{ratio}"),
            "tasks_where_distilled_beats_scratch_beyond_spread_psnr": tally(
                tasks, "psnr", False, f"distill_student_d@{ratio}", f"scratch@{ratio}"),
            "tasks_where_teacher_d_start_beats_scratch_beyond_spread": tally(
                tasks, "kid", True, f"distill_student_d_teacher_d@{ratio}", f"scratch@{ratio}")}


if __name__ == "__main__":
    sys.exit(main())
