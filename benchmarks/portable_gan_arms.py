"""Tasks, arms and the verdict rule of the portable-GAN benchmark (shared by the runner and the report)."""

from __future__ import annotations

from slimlab.core.image_tasks import LABEL_CLASSES

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
        "distill_student_d_pix100", "distill_student_d_teacher_d", "peer_gan_compression", "scratch_slice",
        "distill_student_d_slice")
# the arms trained again at each of the spec's widths (settings "extra_ratios"), keyed "<arm>@<ratio>"
EXTRA_RATIO_ARMS = ("scratch", "distill_no_student_d", "distill_student_d", "distill_student_d_teacher_d")
SLICE_ARMS = ("scratch_slice", "distill_student_d_slice")
ARM_TITLES = {"teacher": "teacher", "scratch": "student from scratch (task loss: pix2pix or CycleGAN)",
              "distill_pixel_only": "student distilled, pixel term only (no feature term, no student D)",
              "distill_no_student_d": "student distilled, no student D (pixel + feature)",
              "distill_student_d_no_triplet": "student distilled with student D, no triplet term",
              "distill_student_d": "student distilled with student D (full method)",
              "distill_student_d_pix100": "student distilled with student D, lambda_pix 100",
              "distill_student_d_teacher_d": "student distilled with student D started from the teacher's D",
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
                "distill_student_d_teacher_d": dict(student_d_init="teacher"),
                "peer_gan_compression": dict(method="gan_compression", lambda_pix=100.0),
                "distill_student_d_slice": dict(init="slice")}
METRICS = ("kid", "fid", "psnr", "ssim", "psnr_to_teacher", "fcn_pixel_acc", "fcn_class_acc", "fcn_miou", "seg_kid",
           "seg_fid")
FCN_METRICS = ("fcn_pixel_acc", "fcn_class_acc", "fcn_miou")


def task_arms(task: str) -> tuple[str, ...]:
    return ARMS if TASK_MODES[task] == "paired" else tuple(arm for arm in ARMS if arm not in SLICE_ARMS)


def arm_plan(task: str, config: dict) -> list[tuple[str, str, float]]:
    """(result key, arm, width ratio) of every student arm of a task: all arms at ``ratio``, then EXTRA_RATIO_ARMS
    at each of ``extra_ratios`` under the key ``<arm>@<ratio>``."""
    return ([(arm, arm, config["ratio"]) for arm in task_arms(task)]
            + [(f"{arm}@{ratio}", arm, ratio) for ratio in config["extra_ratios"] for arm in EXTRA_RATIO_ARMS])


def grid_keys(task: str, config: dict) -> list[str]:
    """Result keys shown as image-grid columns: every arm at ``ratio``, then scratch and the full method at each
    extra width."""
    return [*task_arms(task), *(f"{arm}@{ratio}" for ratio in config.get("extra_ratios", [])
                                for arm in ("scratch", "distill_student_d"))]


def arm_title(key: str) -> str:
    arm, _, ratio = key.partition("@")
    return ARM_TITLES[arm] + (f", width ratio {ratio}" if ratio else "")


def generator_file(task: str) -> str:
    """The A -> B generator a recipe writes: G.pt (paired) or G_AB.pt (unpaired)."""
    return "G.pt" if TASK_MODES[task] == "paired" else "G_AB.pt"


def beats_beyond_spread(results: dict, metric: str, lower_is_better: bool, arm: str = "distill_student_d",
                        baseline: str = "scratch") -> bool:
    candidate, reference = results[arm], results[baseline]
    spread = max(candidate[f"{metric}_std"], reference[f"{metric}_std"])
    gain = reference[f"{metric}_mean"] - candidate[f"{metric}_mean"]
    return (gain if lower_is_better else -gain) > spread


def tally(tasks: dict, metric: str, lower_is_better: bool, arm: str = "distill_student_d",
          baseline: str = "scratch") -> int:
    """Tasks where ``arm`` beats ``baseline`` beyond the seed spread, among the tasks that ran both."""
    return sum(beats_beyond_spread(results, metric, lower_is_better, arm, baseline)
               for results in tasks.values() if arm in results and baseline in results)

