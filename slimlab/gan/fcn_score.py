"""FCN-style downstream score for label -> image tasks (the pix2pix / Portable-GAN Cityscapes protocol, small).

A segmenter is trained on *real* target images only; a generator is then scored by how well that segmenter
recovers the input label map from the generated image: pixel accuracy, mean class accuracy and mean IoU. A
generator whose images carry each class's appearance in the right place scores close to the real images.
The segmenter's trunk also serves as a task-specific feature network for KID / FID (``SegmenterFeatures``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.image_metrics import kid_and_fid
from slimlab.core.image_tasks import labels_from_colours
from slimlab.core.images import to_uint8


class LabelSegmenter(nn.Module):
    """Small fully convolutional segmenter: [B, 3, H, W] in [-1, 1] -> class logits [B, classes, H, W].

    Two stride-2 stages and dilated convolutions give a ~40 px receptive field, enough to tell textures apart on
    64 px images; bilinear upsampling brings the logits back to full resolution (H and W divisible by 4).
    """

    def __init__(self, classes: int, width: int = 32):
        super().__init__()

        def block(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation),
                    nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]

        self.trunk = nn.Sequential(*block(3, width), *block(width, 2 * width, stride=2),
                                   *block(2 * width, 2 * width, stride=2), *block(2 * width, 2 * width, dilation=2),
                                   *block(2 * width, 2 * width, dilation=4))
        self.classify = nn.Conv2d(2 * width, classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classify(self.trunk(images))                      # [B, classes, H/4, W/4]
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


class SegmenterFeatures(nn.Module):
    """Per-channel mean and std of a trained segmenter's trunk: [B, 3, H, W] -> [B, 2 * channels], a feature
    network for KID / FID that knows the task's classes (the spec's "segmenter trunk" features)."""

    def __init__(self, segmenter: LabelSegmenter):
        super().__init__()
        self.trunk = segmenter.trunk

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.trunk(images)                                   # [B, C, H/4, W/4]
        return torch.cat([features.mean((2, 3)), features.std((2, 3))], 1)


def train_segmenter(images: torch.Tensor, labels: torch.Tensor, classes: int, steps: int = 800,
                    batch_size: int = 16, seed: int = 0, learning_rate: float = 2e-3) -> LabelSegmenter:
    """Fit a ``LabelSegmenter`` on real images [N, 3, H, W] in [-1, 1] and class maps [N, H, W] (int64), with
    random flips; batches drawn from a generator seeded by ``seed`` so the segmenter is reproducible (torch's
    global generator is seeded too, for the initialisation: callers that draw from it afterwards reseed it)."""
    _check_pairs(images, labels, classes)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LabelSegmenter(classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(steps):
        picks = torch.randint(0, len(images), (batch_size,), generator=generator)
        batch, target = images[picks], labels[picks]                   # [b, 3, H, W], [b, H, W]
        if bool(torch.rand(1, generator=generator) < 0.5):
            batch, target = batch.flip(-1), target.flip(-1)
        loss = F.cross_entropy(model(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def segment(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Predicted class map [N, H, W] (int64) of images [N, 3, H, W] in [-1, 1]."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def segmentation_scores(predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> dict[str, float]:
    """Pixel accuracy, mean class accuracy and mean IoU over the classes present in ``truth`` (as FCN scores do:
    a class absent from the ground truth has no accuracy to average)."""
    if predicted.shape != truth.shape:
        raise SlimlabError(f"predicted labels {tuple(predicted.shape)} and true labels {tuple(truth.shape)} differ")
    # confusion[i, j]: pixels of true class i predicted as class j
    confusion = torch.bincount(truth.reshape(-1) * classes + predicted.reshape(-1),
                               minlength=classes * classes).reshape(classes, classes).double()
    true_pixels, predicted_pixels, hits = confusion.sum(1), confusion.sum(0), confusion.diagonal()
    present = true_pixels > 0
    class_accuracy = hits[present] / true_pixels[present]
    iou = hits[present] / (true_pixels + predicted_pixels - hits)[present]
    return {"pixel_acc": (hits.sum() / confusion.sum()).item(), "class_acc": class_accuracy.mean().item(),
            "miou": iou.mean().item()}


def fcn_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: int) -> dict[str, float]:
    """``segmentation_scores`` of the segmenter's reading of ``images``, keys prefixed ``fcn_``."""
    _check_pairs(images, labels, classes)
    scores = segmentation_scores(segment(model, images), labels, classes)
    return {f"fcn_{name}": value for name, value in scores.items()}


def label_task_scorer(train_label_images: torch.Tensor, train_targets: torch.Tensor, label_images: torch.Tensor,
                      targets: torch.Tensor, classes: int, steps: int = 800):
    """(score, real-image scores) for a label -> image test split: a segmenter (seed 0) learns from the training
    pairs (colour-coded label images [N, 3, H, W] and their real renderings); ``score(images)`` gives its FCN-style
    reading of generated test images against the test label maps plus KID / FID on its trunk's features
    (``seg_kid``, ``seg_fid``) against the real test renderings, whose own FCN scores are the ceiling."""
    segmenter = train_segmenter(train_targets, labels_of_label_images(train_label_images), classes, steps=steps)
    labels = labels_of_label_images(label_images)
    trunk = SegmenterFeatures(segmenter).eval()

    def score(images: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            distances = kid_and_fid(trunk, targets, images, paired=True)  # image i renders label map i
        return fcn_scores(segmenter, images, labels, classes) | {"seg_kid": distances["kid"],
                                                                 "seg_fid": distances["fid"]}

    return score, fcn_scores(segmenter, targets, labels, classes)


def labels_of_label_images(images: torch.Tensor) -> torch.Tensor:
    """Class maps [N, H, W] (int64) of colour-coded label images [N, 3, H, W] in [-1, 1] (built-in palette)."""
    return torch.stack([torch.from_numpy(labels_from_colours(to_uint8(image))) for image in images])


def _check_pairs(images: torch.Tensor, labels: torch.Tensor, classes: int) -> None:
    if images.ndim != 4 or labels.shape != (images.shape[0], *images.shape[-2:]):
        raise SlimlabError(f"images {tuple(images.shape)} and label maps {tuple(labels.shape)} do not pair up "
                           "(expected [N, 3, H, W] and [N, H, W])")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise SlimlabError(f"label maps hold classes outside 0..{classes - 1}")
