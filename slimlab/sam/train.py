"""Training recipes: SAM-style supervised training (the CPU teacher, the GT-only baseline) and TinySAM's
full-stage distillation with online hard prompt sampling. Plain loops, read top to bottom."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from slimlab.core.errors import SlimlabError
from slimlab.core.progress import progress
from slimlab.sam.data import MIN_MASK_PIXELS
from slimlab.sam.losses import (
    binary_iou,
    dice_loss,
    distillation_loss,
    mask_and_iou_loss,
)
from slimlab.sam.model import Sam
from slimlab.sam.prompts import (
    best_mask,
    empty_points,
    gt_hard_prompts,
    masks_to_box_prompts,
    sample_points,
    teacher_correction_points,
    upsample,
)


@dataclass(frozen=True)
class TrainConfig:
    """Shared by supervised training and distillation (fields unused by one recipe are ignored there)."""
    steps: int = 300
    images_per_step: int = 8
    prompts_per_image: int = 4  # paper: 64 prompts per iteration in total
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hard_prompts: str = "gt"  # gt (TinySAM) | teacher (EdgeSAM prompt-in-the-loop) | off (one random prompt)
    hard_mask_weighting: bool = True
    max_rounds: int = 9  # rounds of the gt sampler are drawn uniformly from {0..max_rounds}
    embedding_weight: float = 1.0  # a
    token_weight: float = 1.0  # b
    output_weight: float = 1.0  # c
    gt_loss_weight: float = 1.0  # L_mask + L_iou (0 when the data has no masks)
    focal_weight: float = 1.0  # SAM uses focal:dice = 20:1; at 128 px and a few hundred steps that collapses to
    #                            empty masks, so the CPU default is 1:1 (set 20 to follow SAM)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "images_per_step", "prompts_per_image"):
            if getattr(self, name) < 1:
                raise SlimlabError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.max_rounds < 0:
            raise SlimlabError(f"max_rounds={self.max_rounds}: must be at least 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SlimlabError(f"lr={self.lr}: must be a positive finite number")
        for name in ("weight_decay", "embedding_weight", "token_weight", "output_weight", "gt_loss_weight",
                     "focal_weight"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise SlimlabError(f"{name}={getattr(self, name)}: must be a finite number >= 0")
        if not 0 <= self.seed < 2 ** 32:
            raise SlimlabError(f"seed={self.seed}: must be in [0, 2**32)")
        if self.hard_prompts not in ("gt", "teacher", "off"):
            raise SlimlabError(f"hard_prompts='{self.hard_prompts}': choose gt, teacher or off")


def warmup_cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 10% of steps, then cosine decay to 0."""
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_embedding_shapes(teacher: Sam, student: Sam) -> None:
    """Distillation and the teacher's decoder on the student need image embeddings of one shape."""
    if teacher.prompt_encoder.embed_dim != student.prompt_encoder.embed_dim or \
            teacher.prompt_encoder.image_embedding_size != student.prompt_encoder.image_embedding_size:
        raise SlimlabError("teacher and student embeddings differ in shape; pick layouts of the same family size")


def stack_images(samples, model: Sam) -> torch.Tensor:
    """(H, W, 3) uint8 sample images -> normalised (B, 3, S, S) on the model's device."""
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in samples])
    return model.preprocess(images.to(model.pixel_mean.device))


def batch_tensors(samples, model: Sam, prompts_per_image: int, rng: np.random.Generator):
    """Normalised images (B, 3, S, S), chosen GT masks (P, S, S) and the image index of each prompt (P,)."""
    images = stack_images(samples, model)
    masks, owners = [], []
    for index, sample in enumerate(samples):
        if len(sample.masks) == 0:
            continue
        chosen = rng.choice(len(sample.masks), size=prompts_per_image, replace=len(sample.masks) < prompts_per_image)
        masks.append(torch.from_numpy(sample.masks[chosen]))
        owners += [index] * prompts_per_image
    gt = torch.cat(masks).to(images.device) if masks else torch.zeros(0, *images.shape[-2:], dtype=torch.bool)
    return images, gt, torch.tensor(owners, dtype=torch.long, device=images.device)


def decoder_fn(model: Sam, multimask: bool = True):
    def decode(embeddings, coords, labels, mask_input, boxes=None):
        logits, iou, _ = model.decode(embeddings, coords, labels, boxes, mask_input, multimask)
        return logits, iou
    return decode


def random_prompts(gt: torch.Tensor, generator: torch.Generator, use_box: bool, slots: int = 10):
    """One positive point uniform in each GT mask, or a jittered box."""
    coords, labels = empty_points(len(gt), slots, gt.device)
    if use_box:
        return None, None, masks_to_box_prompts(gt, generator)
    coords[:, 0], labels[:, 0] = sample_points(gt, gt, generator), 1.0
    return coords[:, :1], labels[:, :1], None


def train_supervised(model: Sam, dataset, config: TrainConfig, description: str = "train") -> list[dict]:
    """SAM-style training on GT masks: box or point prompts, points refined by up to 2 error clicks."""
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.steps)
    model.train()
    log = []
    for step in progress(range(config.steps), description):
        samples = [dataset[int(i)] for i in rng.integers(0, len(dataset), config.images_per_step)]
        images, gt, owners = batch_tensors(samples, model, config.prompts_per_image, rng)
        if len(gt) == 0:  # no image of this batch has a mask
            continue
        embeddings = model.encode(images)[owners]  # (P, C, h, w)
        if rng.random() < 0.5:
            coords, labels, boxes = random_prompts(gt, generator, use_box=True)
            mask_prompt = None
        else:
            boxes = None
            coords, labels, mask_prompt = gt_hard_prompts(decoder_fn(model), embeddings.detach(), gt, generator,
                                                          max_rounds=2, slots=3)
        logits, iou, _ = model.decode(embeddings, coords, labels, boxes, mask_prompt)
        loss = mask_and_iou_loss(upsample_all(logits, gt.shape[-1]), iou, gt, config.focal_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        log.append({"step": step, "loss": loss.item()})
    model.eval()
    return log


def upsample_all(logits: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(logits, (size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def teacher_embeddings(teacher: Sam, dataset, batch: int = 16) -> torch.Tensor:
    """Precompute the frozen teacher's image embeddings once (as the paper does offline): (N, C, h, w)."""
    outputs = []
    for start in range(0, len(dataset), batch):
        samples = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        outputs.append(teacher.encode(stack_images(samples, teacher)))
    return torch.cat(outputs)


def distill(teacher: Sam, student: Sam, dataset, config: TrainConfig, cached: torch.Tensor | None = None,
            description: str = "distill") -> list[dict]:
    """Full-stage distillation: L = a L1(emb) + b L1(tokens) + c sum_i H_i L1(logits_i) + L_mask + L_iou."""
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.steps)
    student.train()
    log = []
    started = time.perf_counter()
    for step in progress(range(config.steps), description):
        indices = rng.integers(0, len(dataset), config.images_per_step)
        samples = [dataset[int(i)] for i in indices]
        images, gt, owners = batch_tensors(samples, student, config.prompts_per_image, rng)
        if len(gt) == 0:
            continue
        with torch.no_grad():
            teacher_images = cached[torch.as_tensor(indices)].to(images.device) if cached is not None \
                else teacher.encode(images)
        student_images = student.encode(images)  # (B, C, h, w)
        t_emb, s_emb = teacher_images[owners], student_images[owners]  # (P, C, h, w)
        size = gt.shape[-1]
        if config.hard_prompts == "teacher":
            loss, parts = prompt_in_the_loop_loss(teacher, student, t_emb, s_emb, gt, generator, rng)
            loss = loss + config.embedding_weight * F.l1_loss(student_images, teacher_images)
        else:
            use_box = bool(rng.random() < 0.5)  # box or point prompts, p = 0.5 each, in both modes
            if config.hard_prompts == "gt" and not use_box:  # hard sampling iterates point prompts; boxes are not
                coords, labels, mask_prompt = gt_hard_prompts(decoder_fn(student), s_emb.detach(), gt, generator,
                                                              max_rounds=config.max_rounds,
                                                              slots=config.max_rounds + 1)
                boxes = None
            else:
                coords, labels, boxes = random_prompts(gt, generator, use_box=use_box)
                mask_prompt = None
            s_logits, s_iou, s_tokens = student.decode(s_emb, coords, labels, boxes, mask_prompt)
            with torch.no_grad():
                t_logits, _, t_tokens = teacher.decode(t_emb, coords, labels, boxes, mask_prompt)
            s_up, t_up = upsample_all(s_logits, size), upsample_all(t_logits, size)
            loss, parts = distillation_loss(
                {"embeddings": student_images, "tokens": s_tokens, "logits": s_up},
                {"embeddings": teacher_images, "tokens": t_tokens, "logits": t_up}, gt,
                (config.embedding_weight, config.token_weight, config.output_weight), config.hard_mask_weighting)
            if config.gt_loss_weight > 0:
                loss = loss + config.gt_loss_weight * mask_and_iou_loss(s_up, s_iou, gt, config.focal_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        log.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - started, **parts})
    student.eval()
    return log


def prompt_in_the_loop_loss(teacher: Sam, student: Sam, t_emb, s_emb, gt, generator, rng, iterations: int = 2):
    """EdgeSAM's variant: box or point (p = 0.5), then ``iterations`` clicks where student and teacher disagree;
    each state is scored by 5 BCE + 5 Dice against the teacher's mask, averaged over the states."""
    coords, labels, boxes = random_prompts(gt, generator, use_box=bool(rng.random() < 0.5), slots=iterations + 1)
    if coords is None:
        coords, labels = empty_points(len(gt), 0, gt.device)
    size, total, states = gt.shape[-1], 0.0, iterations + 1
    for state in range(states):
        s_logits, s_iou, s_tokens = student.decode(s_emb, coords, labels, boxes, None)
        with torch.no_grad():
            t_logits, t_iou, t_tokens = teacher.decode(t_emb, coords, labels, boxes, None)
        s_up, t_up = upsample_all(s_logits, size), upsample_all(t_logits, size)
        target = (t_up > 0).float()
        total = total + 5 * F.binary_cross_entropy_with_logits(s_up, target) + 5 * dice_loss(s_up, target).mean()
        if state == 0:
            total = total + F.l1_loss(s_tokens, t_tokens)
        if state < iterations:
            student_mask = upsample(best_mask(s_logits.detach(), s_iou.detach()), size) > 0
            teacher_mask = upsample(best_mask(t_logits, t_iou), size) > 0
            points, new_labels = teacher_correction_points(student_mask, teacher_mask, gt, generator)
            coords = torch.cat([coords, points[:, None]], dim=1)
            labels = torch.cat([labels, new_labels[:, None]], dim=1)
    loss = total / states
    return loss, {"agreement": float(binary_iou(student_mask, teacher_mask).mean())}


class TeacherLabeledDataset:
    """Images without ground truth: the teacher's confident masks become the targets (pseudo-GT).

    For each image, ``points`` random single-point prompts are decoded by the teacher (multimask, best predicted
    IoU); masks with predicted IoU above ``min_iou`` and at least ``MIN_MASK_PIXELS`` pixels are kept. Computed
    once per image.
    """

    def __init__(self, dataset, teacher: Sam, points: int = 16, min_iou: float = 0.7, seed: int = 0) -> None:
        self.dataset, self.teacher, self.points, self.min_iou = dataset, teacher, points, min_iou
        self.seed = seed
        self.cache: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    @torch.no_grad()
    def __getitem__(self, index: int):
        if index in self.cache:
            return self.cache[index]
        sample = self.dataset[index]
        if len(sample.masks) == 0:
            size = self.teacher.image_size
            image = torch.from_numpy(sample.image).permute(2, 0, 1)[None].float().to(self.teacher.pixel_mean.device)
            embeddings = self.teacher.encode(self.teacher.preprocess(image))
            generator = torch.Generator().manual_seed(self.seed + index)
            coords = (torch.rand(self.points, 1, 2, generator=generator) * (size - 1)).to(image.device)
            logits, iou, _ = self.teacher.decode(embeddings, coords, torch.ones(self.points, 1, device=image.device))
            best = iou.argmax(dim=1)
            rows = torch.arange(self.points)
            masks = upsample(logits[rows, best], size) > 0
            keep = (iou[rows, best] > self.min_iou) & (masks.flatten(1).sum(1) >= MIN_MASK_PIXELS)
            sample = type(sample)(sample.image, masks[keep].cpu().numpy(), ["teacher"] * int(keep.sum()),
                                  [set() for _ in range(int(keep.sum()))])
        self.cache[index] = sample
        return sample
