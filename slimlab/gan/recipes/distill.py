"""Portable-GAN distillation (Chen et al., AAAI 2020): a thin student generator learns low-level (pixels) and
high-level (teacher-D features) information from a frozen teacher, while a student discriminator, which
counts real and teacher images as real and student images as fake, plays an adversarial game with it.

Per step and translation direction: (1) teacher forward, no grad; (2) update D_S on L_DS_gan + lambda_tri
L_tri; (3) update G_S on lambda_gan L_GS_gan + lambda_pix L_pix + lambda_feat L_feat (+ lambda_gt L1 to the
ground truth). Unpaired tasks distil both directions (two teachers, two students, two student Ds).

``method="gan_compression"`` runs the peer recipe of GAN Compression (Li et al., CVPR 2020) on the same loop:
L1 to the ground truth (paired) or to the teacher's output (unpaired), MSE between the teacher's bottleneck
activations and the student's mapped by learned 1x1 convolutions, and a discriminator started from the teacher's
D that judges real images against student images only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.io import refuse_output_over_inputs
from slimlab.core.progress import progress
from slimlab.core.rundir import RunDirectory
from slimlab.core.runtime import seed_all, select_device
from slimlab.gan.checkpoint import load_discriminator, load_generator, save_discriminator, save_generator
from slimlab.gan.config import DistillConfig
from slimlab.gan.data import Augmentation, StepSampler, paired_folder, resolve_data, unpaired_folders
from slimlab.gan.losses import (activation_distillation, conditional_input, discriminator_loss, feature_distillation,
                                lsgan, pixel_distillation, student_discriminator_terms, triplet_term)
from slimlab.gan.networks import GeneratorSpec, PatchDiscriminator, bottleneck_layers, make_student, slice_init
from slimlab.gan.training import (adam, all_finite, init_weights, linear_decay_lr, resume_point, save_state,
                                  seed_step, set_lr)


@dataclass
class Direction:
    """One translation direction: frozen teacher G and feature net phi, trainable student G and student D."""
    name: str                       # "AB" or "BA"
    teacher: nn.Module
    features: PatchDiscriminator    # phi: teacher D (frozen) or a seeded random PatchGAN
    student: nn.Module
    student_d: PatchDiscriminator | None
    student_spec: GeneratorSpec
    layers: tuple[int, ...] = ()       # gan_compression: generator layers whose activations are distilled
    adapters: nn.ModuleList | None = None  # gan_compression: one 1x1 conv per layer, student -> teacher width


def random_feature_network(channels: int, ndf: int, seed: int) -> PatchDiscriminator:
    """A fixed random PatchGAN (He init from ``seed``) as phi when no teacher D is wanted."""
    network = PatchDiscriminator(channels, ndf)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
                module.bias.zero_()
    return network


def build_directions(cfg: DistillConfig, device: torch.device) -> list[Direction]:
    teacher_path = Path(cfg.teacher)
    folder = teacher_path.parent
    if cfg.mode == "paired":
        plan = [("AB", teacher_path, Path(cfg.teacher_d) if cfg.teacher_d else folder / "D.pt")]
    else:
        reverse = Path(cfg.teacher_reverse) if cfg.teacher_reverse else folder / "G_BA.pt"
        plan = [("AB", teacher_path, Path(cfg.teacher_d) if cfg.teacher_d else folder / "D_B.pt"),
                ("BA", reverse, folder / "D_A.pt")]
    init = torch.Generator().manual_seed(cfg.seed)
    given_spec = GeneratorSpec(kind=cfg.teacher_kind, ngf=cfg.teacher_ngf, n_blocks=cfg.teacher_n_blocks,
                               num_downs=cfg.teacher_num_downs) if cfg.teacher_kind else None
    peer = cfg.method == "gan_compression"
    directions = []
    for name, g_path, d_path in plan:
        teacher, teacher_spec = load_generator(g_path, given_spec)
        if peer and teacher_spec.kind != "resnet":
            raise SlimlabError(f"method=gan_compression distils bottleneck activations of a resnet generator; "
                               f"{g_path} is a {teacher_spec.kind} generator")
        from_teacher = cfg.student_d_init == "teacher" and cfg.student_discriminator
        needs_teacher_d = cfg.feature_extractor == "teacher_d" or cfg.ndf == 0 or peer or from_teacher
        teacher_d = load_discriminator(d_path) if needs_teacher_d else None
        channels = teacher_d.input_channels if teacher_d else (6 if cfg.mode == "paired" else 3)
        ndf = cfg.ndf or teacher_d.ndf
        features = teacher_d if cfg.feature_extractor == "teacher_d" else random_feature_network(channels, ndf, 4321)
        student, student_spec = make_student(teacher, teacher_spec, cfg.ratio, "scratch")
        init_weights(student, init)
        if cfg.init == "slice":  # after the random init, so sliced filters are not overwritten
            slice_init(student, teacher)
        if peer:  # GAN Compression keeps the teacher's D architecture and starts from its weights
            student_d = copy.deepcopy(teacher_d) if cfg.student_discriminator else None
            layers = bottleneck_layers(teacher_spec)
            adapters = init_weights(nn.ModuleList(nn.Conv2d(4 * student_spec.ngf, 4 * teacher_spec.ngf, 1)
                                                  for _ in layers), init).to(device)
        else:
            if from_teacher:
                if ndf != teacher_d.ndf:
                    raise SlimlabError(f"DistillConfig: student_d_init=teacher copies {d_path} (width "
                                       f"{teacher_d.ndf}); 'ndf' is {cfg.ndf}, set it to 0 or {teacher_d.ndf}")
                student_d = copy.deepcopy(teacher_d)  # a copy: D_S trains, the feature network stays frozen
            else:
                student_d = init_weights(PatchDiscriminator(channels, ndf), init) if cfg.student_discriminator else None
            layers, adapters = (), None
        for frozen in (teacher, features):
            frozen.requires_grad_(False)
            frozen.eval()
        directions.append(Direction(name, teacher.to(device), features.to(device), student.to(device).train(),
                                    student_d.to(device).train() if student_d else None, student_spec, layers,
                                    adapters))
    return directions


def check_crop_size(cfg: DistillConfig, spec: GeneratorSpec) -> None:
    """The config cannot check this alone: the size multiple comes from the teacher file's architecture."""
    if cfg.crop_size % spec.size_multiple:
        raise SlimlabError(f"DistillConfig: 'crop_size' must be a multiple of {spec.size_multiple} for the teacher's "
                           f"{spec.kind} generator ({cfg.teacher}), got {cfg.crop_size}")


def distill_step(directions: list[Direction], optimizers: dict, batches: dict, cfg: DistillConfig) -> dict:
    """One D_S update then one G_S update over all directions. batches[name] = (x, y), each (B, 3, H, W)."""
    paired, peer = cfg.mode == "paired", cfg.method == "gan_compression"
    logs: dict[str, float] = {}
    teacher_out, student_out, teacher_acts, student_acts = {}, {}, {}, {}
    d_total = torch.zeros(())
    for direction in directions:
        x, y = batches[direction.name]
        if peer:  # outputs (B, 3, H, W) and bottleneck activations (B, 4 ngf, H/4, W/4)
            with torch.no_grad():
                teacher_out[direction.name], teacher_acts[direction.name] = \
                    direction.teacher.forward_with_activations(x, direction.layers)
            student_out[direction.name], student_acts[direction.name] = \
                direction.student.forward_with_activations(x, direction.layers)
        else:
            with torch.no_grad():
                teacher_out[direction.name] = direction.teacher(x)  # (B, 3, H, W)
            student_out[direction.name] = direction.student(x)
        if direction.student_d is None:
            continue
        D, t, s = direction.student_d, teacher_out[direction.name], student_out[direction.name].detach()

        def judge(image, D=D, x=x):
            return conditional_input(D.input_channels, x, image)

        if peer:  # the peer's D sees real images against student images only
            real_logits, student_logits = D(judge(y)), D(judge(s))
            d_loss = discriminator_loss(real_logits, student_logits)
            logs[f"{direction.name}_d_real_y"] = lsgan(real_logits, True).item()
            logs[f"{direction.name}_d_fake"] = lsgan(student_logits, False).item()
            d_total = d_total + d_loss
            continue

        # one pass per image kind gives both the patch logits and the penultimate features
        (real_logits, real_f), (teacher_logits, teacher_f), (student_logits, student_f) = (
            D.logits_and_features(judge(image)) for image in (y, t, s))
        terms = student_discriminator_terms(real_logits, teacher_logits, student_logits)
        d_loss = terms["total"]
        if cfg.triplet:
            tri = triplet_term(real_f[-1], teacher_f[-1], student_f[-1], cfg.triplet_margin, paired)
            d_loss = d_loss + cfg.lambda_tri * tri
            logs[f"{direction.name}_tri"] = tri.item()
        for key in ("real_y", "real_teacher", "fake"):
            logs[f"{direction.name}_d_{key}"] = terms[key].item()
        d_total = d_total + d_loss
    if "D" in optimizers:
        optimizers["D"].zero_grad(set_to_none=True)
        d_total.backward()
        optimizers["D"].step()
        logs["d"] = d_total.item()

    g_total = torch.zeros(())
    for direction in directions:
        x, y = batches[direction.name]
        t, s = teacher_out[direction.name], student_out[direction.name]
        if peer:  # reconstruction: the ground truth when there is one (paired), else the teacher's output
            pix = pixel_distillation(y if paired else t, s)
            mapped = [adapter(a) for adapter, a in zip(direction.adapters, student_acts[direction.name], strict=True)]
            feat = activation_distillation(teacher_acts[direction.name], mapped)
            g_loss = cfg.lambda_pix * pix + cfg.lambda_distill * feat
        else:
            phi_channels = direction.features.input_channels
            with torch.no_grad():
                teacher_features = direction.features.features(conditional_input(phi_channels, x, t))
            pix = pixel_distillation(t, s)
            feat = feature_distillation(teacher_features,
                                        direction.features.features(conditional_input(phi_channels, x, s)))
            g_loss = cfg.lambda_pix * pix + cfg.lambda_feat * feat
        if direction.student_d is not None:
            D = direction.student_d
            D.requires_grad_(False)
            gan = lsgan(D(conditional_input(D.input_channels, x, s)), True)
            D.requires_grad_(True)
            g_loss = g_loss + cfg.lambda_gan * gan
            logs[f"{direction.name}_g_gan"] = gan.item()
        if paired and cfg.lambda_gt > 0:
            g_loss = g_loss + cfg.lambda_gt * F.l1_loss(s, y)
        logs[f"{direction.name}_pix"], logs[f"{direction.name}_{'distill' if peer else 'feat'}"] = pix.item(), feat.item()
        g_total = g_total + g_loss
    if not paired and cfg.lambda_cycle > 0:
        by_name = {d.name: d for d in directions}
        (a, _), (b, _) = batches["AB"], batches["BA"]
        cycle = F.l1_loss(by_name["BA"].student(student_out["AB"]), a) + \
            F.l1_loss(by_name["AB"].student(student_out["BA"]), b)
        g_total = g_total + cfg.lambda_cycle * cycle
        logs["cycle"] = cycle.item()
    optimizers["G"].zero_grad(set_to_none=True)
    g_total.backward()
    optimizers["G"].step()
    logs["g"] = g_total.item()
    return logs


def distill(cfg: DistillConfig) -> Path:
    """Distil to ``cfg.steps`` (resuming from out_dir/state.pt when present); returns out_dir."""
    device = select_device(cfg.device)
    seed_all(cfg.seed)
    root = resolve_data(cfg.data)
    paired = cfg.mode == "paired"
    dataset = paired_folder(root, "train") if paired else None
    domains = None if paired else unpaired_folders(root, "train")
    directions = build_directions(cfg, device)
    check_crop_size(cfg, directions[0].student_spec)
    out = Path(cfg.out_dir)
    # G.pt / D.pt would replace the teacher's files; the run must not write into the data it reads
    refuse_output_over_inputs(out, (root, cfg.teacher, cfg.teacher_d, cfg.teacher_reverse))
    run = RunDirectory(out)
    networks = {f"S_{d.name}": d.student for d in directions}
    networks.update({f"DS_{d.name}": d.student_d for d in directions if d.student_d is not None})
    networks.update({f"A_{d.name}": d.adapters for d in directions if d.adapters is not None})
    # the 1x1 adapters of gan_compression train with the student and are dropped at the end
    optimizers = {"G": adam([p for d in directions for p in d.student.parameters()]
                            + [p for d in directions if d.adapters is not None for p in d.adapters.parameters()],
                            cfg.lr, cfg.beta1)}
    if cfg.student_discriminator:
        optimizers["D"] = adam([p for d in directions for p in d.student_d.parameters()], cfg.lr, cfg.beta1)
    start, identity = resume_point(cfg, run, networks, optimizers)
    run.write_config(cfg)  # after the resume check: a refused run leaves the finished run's config alone
    sampler = StepSampler(Augmentation(cfg.load_size, cfg.crop_size, cfg.flip), cfg.batch_size, cfg.seed)
    for step in progress(range(start, cfg.steps), "distill", total=cfg.steps - start):
        seed_step(cfg.seed, step)
        set_lr(optimizers, linear_decay_lr(cfg.lr, step, cfg.steps))
        if paired:
            a, b = sampler.paired(dataset, step)
            batches = {"AB": (a.to(device), b.to(device))}
        else:
            a, b = sampler.unpaired(*domains, step)
            batches = {"AB": (a.to(device), b.to(device)), "BA": (b.to(device), a.to(device))}
        logs = distill_step(directions, optimizers, batches, cfg)
        all_finite(logs, f"{cfg.out_dir} step {step}")
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            run.log(step=step, **logs)
        if (step + 1) % cfg.checkpoint_every == 0 or step == cfg.steps - 1:
            save_state(out / "state.pt", step + 1, networks, optimizers, identity)
    for direction in directions:
        # the student is a plain generator file: same class as the teacher, fewer channels
        save_generator(out / ("G.pt" if paired else f"G_{direction.name}.pt"), direction.student, direction.student_spec)
        if direction.student_d is not None:
            save_discriminator(out / f"D_S_{direction.name}.pt", direction.student_d)
    run.plot("step", ["g"] + (["d"] if cfg.student_discriminator else []), "losses")
    return out
