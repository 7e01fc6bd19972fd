"""Demo section: train a small pix2pix teacher on built-in edges->photo, distil a portable student with a student
discriminator, translate the held-out crops with both and export the student to ONNX."""

from __future__ import annotations

from pathlib import Path

from slimlab.core.config import load_config
from slimlab.core.image_tasks import builtin_task
from slimlab.core.images import image_grid, write_image
from slimlab.core.macs import count_cost
from slimlab.gan.checkpoint import load_generator
from slimlab.gan.config import DistillConfig, TeacherConfig
from slimlab.gan.evaluate import default_features, generate, load_test_split, quality
from slimlab.gan.recipes.distill import distill
from slimlab.gan.recipes.teacher import train_teacher
from slimlab.gan.translate import export_onnx


def run_demo(out_dir: Path, quick: bool) -> str:
    root = builtin_task("edges2photo")
    teacher_steps, student_steps = (40, 30) if quick else (600, 300)
    common = dict(data=str(root), device="auto", batch_size=4, resume=False, log_every=10)
    train_teacher(load_config(TeacherConfig, out_dir=str(out_dir / "teacher"), steps=teacher_steps, **common))
    distill(load_config(DistillConfig, out_dir=str(out_dir / "student"), teacher=str(out_dir / "teacher" / "G.pt"),
                        steps=student_steps, ratio=0.375, **common))
    inputs, targets = load_test_split(root, "paired")
    features = default_features()
    rows, grid_columns = [], {}
    for name in ("teacher", "student"):
        generator, spec = load_generator(out_dir / name / "G.pt")
        outputs = generate(generator, inputs)
        grid_columns[name] = outputs
        scores = quality(outputs, targets, features)
        cost = count_cost(generator, (3, 64, 64))
        rows.append(f"| {name} | ngf {spec.ngf} | {cost.params:,} | {cost.macs / 1e6:.1f} | {scores['psnr']:.2f} | "
                    f"{scores['ssim']:.3f} | {1000 * scores['kid']:.2f} |")
    picks = range(0, len(inputs), max(1, len(inputs) // 4))
    write_image(out_dir / "samples.png", image_grid(
        [[inputs[i], targets[i], grid_columns["teacher"][i], grid_columns["student"][i]] for i in picks]))
    difference = export_onnx(out_dir / "student" / "G.pt", out_dir / "student.onnx", size=64)
    return "\n".join([
        f"pix2pix teacher ({teacher_steps} steps) and a portable student distilled with a student discriminator "
        f"({student_steps} steps) on the built-in edges->photo task (64x64, test crops from unseen source images).",
        "", "| model | width | params | MMACs (64x64) | PSNR dB | SSIM | KID x1000 |", "|---|---|---|---|---|---|---|",
        *rows, "", f"Student exported to `student.onnx` (max |torch - onnxruntime| = {difference:.1e}). "
        "KID uses fixed random-conv features (no Inception weights offline).", "",
        "Columns: edges, photo, teacher, student.", "", "![samples](gan/samples.png)"])
