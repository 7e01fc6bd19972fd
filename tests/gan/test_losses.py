import math

import pytest
import torch

from slimlab.gan.losses import (activation_distillation, conditional_input, discriminator_loss, feature_distillation, lsgan,
                                pixel_distillation, student_discriminator_terms, triplet_term)


def test_pixel_and_feature_distillation_by_hand():
    teacher = torch.zeros(1, 3, 2, 2)
    student = torch.zeros(1, 3, 2, 2)
    student[..., 0] = 0.5                       # half the pixels off by 0.5
    assert pixel_distillation(teacher, student).item() == pytest.approx(0.25)
    layers_t = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 1, 1)]
    layers_s = [torch.ones(1, 2, 2, 2), torch.full((1, 4, 1, 1), -3.0)]
    assert feature_distillation(layers_t, layers_s).item() == pytest.approx((1 + 3) / 2)


def test_student_discriminator_game_by_hand():
    terms = student_discriminator_terms(real_logits=torch.ones(2, 1, 3, 3), teacher_logits=torch.zeros(2, 1, 3, 3),
                                        student_logits=torch.full((2, 1, 3, 3), 0.5))
    # real y scored 1 -> 0; teacher scored 0 -> (0 - 1)^2 = 1; student scored 0.5 -> 0.25
    assert terms["real_y"].item() == 0 and terms["real_teacher"].item() == 1 and terms["fake"].item() == 0.25
    assert terms["total"].item() == pytest.approx(0.5 * 0 + 0.5 * 1 + 0.25)
    assert lsgan(torch.full((4,), 0.5), True).item() == 0.25
    assert discriminator_loss(torch.ones(3), torch.ones(3)).item() == pytest.approx(0.5)


def test_triplet_term_by_hand():
    x_axis, y_axis = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 2.0])  # normalised to unit vectors
    real = torch.stack([x_axis, x_axis])
    teacher = torch.stack([x_axis, y_axis])
    student = torch.stack([y_axis, x_axis])
    # sample 1: d+ = 0, d- = sqrt 2 -> [1 - sqrt 2]_+ = 0; sample 2: d+ = sqrt 2, d- = 0 -> 1 + sqrt 2
    assert triplet_term(real, teacher, student, margin=1.0).item() == pytest.approx((1 + math.sqrt(2)) / 2)
    assert triplet_term(real, teacher, student, margin=2.0).item() == pytest.approx((2 - math.sqrt(2) + 2 + math.sqrt(2)) / 2)
    # unpaired: the anchor is the centroid of the real features, here (1, 0) again
    assert triplet_term(real, teacher, student, margin=1.0, paired=False).item() == pytest.approx((1 + math.sqrt(2)) / 2)


def test_conditional_input():
    source, image = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert conditional_input(6, source, image).shape == (1, 6, 4, 4)
    assert conditional_input(3, source, image) is image


def test_activation_distillation_is_the_mean_over_layers_of_each_layers_mse():
    teacher = [torch.ones(1, 2, 1, 1), torch.full((2, 1, 2, 2), 3.0)]
    student = [torch.zeros(1, 2, 1, 1), torch.ones(2, 1, 2, 2)]
    # layer 1: every entry off by 1 -> MSE 1; layer 2: off by 2 -> MSE 4; mean of the two layers
    assert activation_distillation(teacher, student).item() == pytest.approx((1 + 4) / 2)
