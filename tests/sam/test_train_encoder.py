import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimlab.core.errors import SlimlabError
from slimlab.sam.build import build_model
from slimlab.sam.shapes import ShapesDataset
from slimlab.sam.train import TrainConfig, stack_images
from slimlab.sam.train_encoder import distill_encoder_only


def test_first_loss_is_the_embedding_mse_of_the_first_batch_by_hand():
    data = ShapesDataset(4)
    torch.manual_seed(0)
    teacher, student = build_model("shapes_teacher").eval(), build_model("shapes_student").eval()
    # targets of zeros: the first loss is the mean square of the student's embeddings of the first batch, whose
    # images are the first draw of the recipe's generator
    cached = torch.zeros(len(data), *student.encode(stack_images([data[0]], student)).shape[1:])
    indices = np.random.default_rng(3).integers(0, len(data), 2)
    with torch.no_grad():
        expected = student.encode(stack_images([data[int(i)] for i in indices], student)).pow(2).mean().item()
    log = distill_encoder_only(teacher, student, data, TrainConfig(steps=1, images_per_step=2, seed=3), cached)
    assert log[0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_only_the_encoder_learns_and_the_student_ends_with_the_teachers_decoder():
    data = ShapesDataset(4)
    torch.manual_seed(0)
    teacher, student = build_model("shapes_teacher"), build_model("shapes_student")
    encoder_before = [p.clone() for p in student.image_encoder.parameters()]
    config = TrainConfig(steps=30, images_per_step=2, lr=3e-3)
    log = distill_encoder_only(teacher, student, data, config)
    for part in ("prompt_encoder", "mask_decoder"):
        taught, learned = getattr(teacher, part).state_dict(), getattr(student, part).state_dict()
        assert taught.keys() == learned.keys() and all(torch.equal(taught[k], learned[k]) for k in taught)
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, student.image_encoder.parameters()))
    assert all(p.requires_grad for p in student.parameters())  # the frozen parts are trainable again afterwards
    assert not student.training
    assert np.mean([e["loss"] for e in log[-5:]]) < 0.5 * np.mean([e["loss"] for e in log[:5]])
    # the embeddings moved towards the teacher's on the training images
    images = stack_images([data[i] for i in range(len(data))], student)
    with torch.no_grad():
        assert F.mse_loss(student.encode(images), teacher.encode(images)).item() < log[0]["loss"]


def test_embeddings_of_another_shape_are_refused():
    teacher, student = build_model("shapes_teacher"), build_model("vit_t", device="meta")
    with pytest.raises(SlimlabError, match="embeddings differ in shape"):
        distill_encoder_only(teacher, student, ShapesDataset(1), TrainConfig(steps=1))
