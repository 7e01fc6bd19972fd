import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.image_tasks import LABEL_PALETTE
from slimlab.gan.fcn_score import (LabelSegmenter, SegmenterFeatures, fcn_scores, labels_of_label_images,
                                   segmentation_scores, train_segmenter)


def test_segmentation_scores_by_hand():
    truth = torch.tensor([[0, 0, 1, 1], [1, 1, 2, 2]])
    predicted = torch.tensor([[0, 1, 1, 1], [1, 0, 2, 2]])
    # confusion rows (true) x columns (predicted): [[1, 1, 0], [1, 3, 0], [0, 0, 2]]
    scores = segmentation_scores(predicted, truth, classes=4)  # class 3 is absent from the truth: not averaged
    assert scores["pixel_acc"] == pytest.approx(6 / 8)
    assert scores["class_acc"] == pytest.approx((1 / 2 + 3 / 4 + 2 / 2) / 3)
    # IoU: class 0: 1 / (2 + 2 - 1); class 1: 3 / (4 + 4 - 3); class 2: 2 / 2
    assert scores["miou"] == pytest.approx((1 / 3 + 3 / 5 + 1) / 3)
    with pytest.raises(SlimlabError, match="differ"):
        segmentation_scores(predicted[:1], truth, classes=4)


def test_label_images_decode_to_class_maps():
    labels = torch.tensor([[[0, 1], [2, 4]]])                            # [1, 2, 2]
    images = torch.from_numpy(LABEL_PALETTE[labels.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(labels_of_label_images(images), labels)


def test_segmenter_learns_colour_coded_classes_and_refuses_bad_labels():
    torch.manual_seed(0)
    blocks = (torch.rand(24, 4, 4) < 0.5).long()                        # [24, 4, 4]: one class per 4x4 block
    labels = blocks.repeat_interleave(4, 1).repeat_interleave(4, 2)      # [24, 16, 16]
    images = torch.stack([labels.float() * 1.6 - 0.8] * 3, 1) + 0.05 * torch.randn(24, 3, 16, 16)
    assert LabelSegmenter(2)(images[:2]).shape == (2, 2, 16, 16)
    model = train_segmenter(images, labels, classes=2, steps=60, batch_size=8)
    scores = fcn_scores(model, images, labels, classes=2)
    assert scores["fcn_pixel_acc"] > 0.9 and set(scores) == {"fcn_pixel_acc", "fcn_class_acc", "fcn_miou"}
    with pytest.raises(SlimlabError, match="outside 0..1"):
        fcn_scores(model, images, labels * 2, classes=2)
    with pytest.raises(SlimlabError, match="do not pair up"):
        train_segmenter(images, labels[:3], classes=2)


def test_segmenter_features_are_channel_means_and_stds_of_the_trunk():
    segmenter = LabelSegmenter(3, width=4).eval()
    images = torch.randn(2, 3, 16, 16)
    features = SegmenterFeatures(segmenter)(images)
    trunk = segmenter.trunk(images)                                     # [2, 8, 4, 4]
    assert features.shape == (2, 16)
    assert torch.allclose(features[:, :8], trunk.mean((2, 3))) and torch.allclose(features[:, 8:], trunk.std((2, 3)))
