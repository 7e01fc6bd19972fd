"""MobileSAM's decoupled distillation, TinySAM's ablation baseline: only the student's image encoder learns, by MSE
to the teacher's image embeddings; the prompt encoder and mask decoder are the teacher's, copied and frozen. (TinySAM
finds MSE values too small to optimise well and distils every stage with L1 instead: ``train.distill``.)"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from slimlab.core.progress import progress
from slimlab.sam.model import Sam
from slimlab.sam.train import TrainConfig, check_embedding_shapes, stack_images, warmup_cosine


def distill_encoder_only(teacher: Sam, student: Sam, dataset, config: TrainConfig, cached: torch.Tensor | None = None,
                         description: str = "distill encoder") -> list[dict]:
    """L = MSE(E_S(I), E_T(I)) on the (B, C, h, w) image embeddings; the student ends with the teacher's prompt
    encoder and mask decoder. No masks are needed (images without annotations train as well). Of ``config``:
    steps, images_per_step, lr, weight_decay, seed."""
    check_embedding_shapes(teacher, student)
    rng = np.random.default_rng(config.seed)
    teacher.eval()
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    frozen = [*student.prompt_encoder.parameters(), *student.mask_decoder.parameters()]
    for parameter in frozen:
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(student.image_encoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = warmup_cosine(optimizer, config.steps)
    student.image_encoder.train()
    log, started = [], time.perf_counter()
    try:
        for step in progress(range(config.steps), description):
            indices = rng.integers(0, len(dataset), config.images_per_step)
            images = stack_images([dataset[int(i)] for i in indices], student)  # (B, 3, S, S)
            with torch.no_grad():
                target = cached[torch.as_tensor(indices)].to(images.device) if cached is not None \
                    else teacher.encode(images)  # (B, C, h, w)
            loss = F.mse_loss(student.encode(images), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.image_encoder.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            log.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - started,
                        "embedding_mse": loss.item()})
    finally:
        for parameter in frozen:  # the returned model trains further as any other
            parameter.requires_grad_(True)
        student.eval()
    return log
