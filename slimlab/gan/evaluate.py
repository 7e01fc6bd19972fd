"""Score a generator on a held-out split: PSNR/SSIM to the targets, KID/FID on fixed random-conv features,
fidelity to a teacher, and cost (params, MACs, size, CPU latency).

KID/FID use ``slimlab.core.image_metrics.RandomConvFeatures`` (seeded, offline); they rank models against each
other on one task and are not comparable with Inception-based numbers in papers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.image_metrics import RandomConvFeatures, kid_and_fid, psnr, ssim
from slimlab.core.macs import count_cost
from slimlab.gan.data import paired_folder, unpaired_folders


def load_test_split(root: str | Path, mode: str, split: str = "test",
                    generators: tuple = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (N, 3, H, W): paired ``<split>/A``+``<split>/B``; unpaired ``testA`` + hidden
    ``testB`` (an unpaired training split has no aligned targets). Images of one side must share one size (they
    are scored as one batch); ``generators``: (checkpoint, GeneratorSpec) pairs whose generators must take that
    size. Errors name the first file that does not fit."""
    if mode == "paired":
        dataset = paired_folder(root, split)
        pairs = [dataset.example(i) for i in range(len(dataset))]
        input_files, target_files = [a for a, _ in dataset.pairs], [b for _, b in dataset.pairs]
        inputs, targets = [a for a, _ in pairs], [b for _, b in pairs]
    else:
        domain_a, domain_b = unpaired_folders(root, "test")
        input_files, target_files = domain_a.files, domain_b.files
        inputs = [domain_a.example(i) for i in range(len(domain_a))]
        targets = [domain_b.example(i) for i in range(len(domain_b))]
    inputs, targets = stack_one_size(inputs, input_files), stack_one_size(targets, target_files)
    height, width = inputs.shape[-2:]
    for checkpoint, spec in generators:
        if min(height, width) < spec.min_size or height % spec.size_multiple or width % spec.size_multiple:
            raise SlimlabError(f"{input_files[0]}: {width}x{height} pixels (as every test input); the {spec.kind} "
                               f"generator {checkpoint} needs sides that are multiples of {spec.size_multiple} and "
                               f"at least {spec.min_size}, or its outputs would not match the targets")
    return inputs, targets


def stack_one_size(images: list[torch.Tensor], files: list[Path]) -> torch.Tensor:
    """``torch.stack`` of (3, H, W) images read from ``files``, after checking they all have the first one's size."""
    height, width = images[0].shape[-2:]
    for image, file in zip(images, files):
        if image.shape[-2:] != (height, width):
            raise SlimlabError(f"{file}: {image.shape[-1]}x{image.shape[-2]} pixels, but {files[0].name} is "
                               f"{width}x{height}; the test images are scored as one batch and need one size")
    return torch.stack(images)


@torch.no_grad()
def generate(generator: nn.Module, inputs: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    generator.eval()
    device = next(generator.parameters()).device
    return torch.cat([generator(inputs[i:i + batch_size].to(device)).cpu() for i in range(0, len(inputs), batch_size)])


def quality(outputs: torch.Tensor, targets: torch.Tensor, features: nn.Module,
            teacher_outputs: torch.Tensor | None = None, aligned: bool = True) -> dict[str, float]:
    """PSNR/SSIM to the targets (only when ``aligned``: each target belongs to its output), KID/FID against the
    target set (KID never scores an output against its own target when aligned), and PSNR to the teacher."""
    scores = {"psnr": psnr(outputs, targets).mean().item(),
              "ssim": ssim(outputs, targets).mean().item()} if aligned else {}
    scores.update(kid_and_fid(features, targets, outputs, paired=aligned))
    if teacher_outputs is not None:
        scores["psnr_to_teacher"] = psnr(outputs, teacher_outputs).clamp(max=100).mean().item()
    return scores


def cost(generator: nn.Module, size: int, latency_runs: int = 30) -> dict[str, float]:
    """Params, MACs and fp32 size at ``size`` x ``size``, and median CPU latency of one image (1 thread)."""
    counted = count_cost(generator, (3, size, size))
    cpu = generator.to("cpu").eval()
    x = torch.zeros(1, 3, size, size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: less noise from the other processes on the machine
    times = []
    try:
        with torch.no_grad():
            for run in range(latency_runs + 3):
                started = time.perf_counter()
                cpu(x)
                if run >= 3:  # the first calls allocate; skip them
                    times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return {"params": counted.params, "macs": counted.macs, "size_mb": counted.size_mb_fp32,
            "latency_ms": 1000 * statistics.median(times)}


def default_features() -> nn.Module:
    return RandomConvFeatures(seed=1234, input_size=64)
