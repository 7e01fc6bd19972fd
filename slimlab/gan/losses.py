"""Loss terms of the teacher recipes (pix2pix, CycleGAN) and of portable-GAN distillation.

All adversarial terms are least-squares (LSGAN, the CycleGAN default): a patch logit is pushed to 1 for
"real" and 0 for "fake", and every term is averaged over patches and batch. Functions take tensors, not
networks, so each value can be checked by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """mean (D - 1)^2 for a "real" target, mean D^2 for a "fake" one."""
    return (logits - (1.0 if real else 0.0)).pow(2).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Standard D loss, halved as in pix2pix/CycleGAN so D learns slower than G."""
    return 0.5 * (lsgan(real_logits, True) + lsgan(fake_logits, False))


def conditional_input(discriminator_channels: int, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """pix2pix discriminators see (input, image) stacked on channels; unconditional ones see the image only."""
    if discriminator_channels == source.shape[1] + image.shape[1]:
        return torch.cat([source, image], 1)  # (B, Cin + Cout, H, W)
    return image


# ---- portable-GAN distillation ------------------------------------------------------------------------------

def pixel_distillation(teacher_images: torch.Tensor, student_images: torch.Tensor) -> torch.Tensor:
    """Low-level information: L_pix = mean |G_T(x) - G_S(x)|."""
    return (teacher_images - student_images).abs().mean()


def feature_distillation(teacher_features: list[torch.Tensor], student_features: list[torch.Tensor]) -> torch.Tensor:
    """High-level information: mean over layers of mean |phi_l(G_T(x)) - phi_l(G_S(x))|."""
    terms = [(t - s).abs().mean() for t, s in zip(teacher_features, student_features, strict=True)]
    return torch.stack(terms).mean()


def student_discriminator_terms(real_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """D_S treats real images and teacher images as real, student images as fake.

    L_DS_gan = 0.5 E (D(y) - 1)^2 + 0.5 E (D(G_T(x)) - 1)^2 + E D(G_S(x))^2
    """
    terms = {"real_y": lsgan(real_logits, True), "real_teacher": lsgan(teacher_logits, True),
             "fake": lsgan(student_logits, False)}
    terms["total"] = 0.5 * terms["real_y"] + 0.5 * terms["real_teacher"] + terms["fake"]
    return terms


def triplet_term(real_features: torch.Tensor, teacher_features: torch.Tensor, student_features: torch.Tensor,
                 margin: float = 1.0, paired: bool = True) -> torch.Tensor:
    """Student-D triplet: real anchors should sit closer to teacher images than to student images.

    L_tri = mean [ |f(y) - f(G_T(x))|_2 - |f(y) - f(G_S(x))|_2 + m ]_+ with each feature map flattened and
    L2-normalised per sample. Unpaired batches have no aligned y, so the anchor is the centroid of f(y).
    """
    def normalise(features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.flatten(1), dim=1)  # (B, D), unit rows

    anchor, positive, negative = normalise(real_features), normalise(teacher_features), normalise(student_features)
    if not paired:
        anchor = anchor.mean(0, keepdim=True)  # (1, D)
    d_positive = (anchor - positive).norm(dim=1)  # (B,)
    d_negative = (anchor - negative).norm(dim=1)  # (B,)
    return F.relu(d_positive - d_negative + margin).mean()


# ---- peer: GAN Compression-style distillation (Li et al., CVPR 2020) ----------------------------------------

def activation_distillation(teacher_activations: list[torch.Tensor],
                            mapped_student_activations: list[torch.Tensor]) -> torch.Tensor:
    """L_distill = mean over layers of mean (A_T - conv1x1(A_S))^2: the student's intermediate activations, mapped
    to the teacher's widths by learned 1x1 convolutions, regress the teacher's (B, C_T, h, w) activations."""
    terms = [F.mse_loss(s, t) for t, s in zip(teacher_activations, mapped_student_activations, strict=True)]
    return torch.stack(terms).mean()
