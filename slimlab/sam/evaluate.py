"""Evaluation: prompted mIoU (SAM protocol: multimask, keep the highest predicted IoU), MACs and CPU latency."""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
import torch

from slimlab.sam.losses import binary_iou
from slimlab.sam.model import Sam
from slimlab.sam.prompts import best_mask, empty_points, masks_to_box_prompts


def center_points(masks: np.ndarray) -> np.ndarray:
    """The pixel farthest from the mask boundary (distance-transform centre) of each (K, H, W) mask -> (K, 2) x, y."""
    points = []
    for mask in masks:
        distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        points.append((x, y))
    return np.array(points, dtype=np.float32).reshape(-1, 2)


def samples_with_masks(model: Sam, dataset):
    """(sample, (1, 3, H, W) float image, (K, H, W) bool GT) on the model's device, for each sample with masks."""
    device = model.pixel_mean.device
    for index in range(len(dataset)):
        sample = dataset[index]
        if len(sample.masks):
            yield (sample, torch.from_numpy(sample.image).permute(2, 0, 1)[None].float().to(device),
                   torch.from_numpy(sample.masks).to(device))


@torch.no_grad()
def prompted_ious(model: Sam, dataset, prompt: str = "point", clicks: int = 1,
                  reference: Sam | None = None) -> dict[str, np.ndarray]:
    """Per-instance IoU vs GT (and vs ``reference``'s mask when given) for the same deterministic prompts.

    ``prompt``: "point" (distance-transform centre, then ``clicks``-1 corrective clicks at the centre of the
    largest error region) or "box" (tight box). Images must already be model-sized (ShapesSA, fitted folders).
    -> "iou" (K,) after the last click, "tags", "agreement" (K,) with ``reference``, and for point prompts
    "iou_by_click" (clicks, K): the IoU after each click.
    """
    generator = torch.Generator().manual_seed(0)
    ious, by_click, agreement, tags = [], [], [], []
    for sample, image, gt in samples_with_masks(model, dataset):
        embeddings = model.encode(model.preprocess(image))
        if prompt == "point":
            states = click_predictions(model, embeddings, sample.masks, clicks)
            by_click.append(np.stack([binary_iou(state, gt).cpu().numpy() for state in states]))  # (clicks, K)
            chosen = states[-1]
        else:
            chosen = predict_masks(model, embeddings, sample.masks, prompt, clicks, generator)
        ious.append(binary_iou(chosen, gt).cpu().numpy())
        if reference is not None:
            ref = predict_masks(reference, reference.encode(reference.preprocess(image)), sample.masks, prompt, clicks,
                                generator)
            agreement.append(binary_iou(chosen, ref).cpu().numpy())
        tags += [sorted(t) for t in sample.tags]
    out = {"iou": np.concatenate(ious) if ious else np.zeros(0), "tags": tags}
    if reference is not None:
        out["agreement"] = np.concatenate(agreement) if agreement else np.zeros(0)
    if prompt == "point":
        out["iou_by_click"] = np.concatenate(by_click, axis=1) if by_click else np.zeros((clicks, 0))
    return out


def predict_masks(model: Sam, embeddings: torch.Tensor, masks: np.ndarray, prompt: str, clicks: int,
                  generator: torch.Generator) -> torch.Tensor:
    """(K, H, W) GT -> (K, H, W) bool predictions at the GT resolution."""
    if prompt == "box":
        logits, iou = decode_one_prompt(model, embeddings, masks, "box", generator)
        return upsample(best_mask(logits, iou), masks.shape[-1]) > 0
    return click_predictions(model, embeddings, masks, clicks)[-1]


def decode_one_prompt(model: Sam, embeddings: torch.Tensor, masks: np.ndarray, prompt: str,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt per (K, H, W) GT mask, multimask: its tight box or its distance-transform centre point.
    -> low-res logits (K, M, h, w) and predicted IoUs (K, M)."""
    gt = torch.from_numpy(masks).to(embeddings.device)
    if prompt == "box":
        boxes = masks_to_box_prompts(gt, generator or torch.Generator().manual_seed(0), jitter=0.0)
        logits, iou, _ = model.decode(embeddings, None, None, boxes, None)
    else:
        coords = torch.from_numpy(center_points(masks)).to(gt.device)[:, None]  # (K, 1, 2)
        logits, iou, _ = model.decode(embeddings, coords, torch.ones(len(gt), 1, device=gt.device))
    return logits, iou


def click_predictions(model: Sam, embeddings: torch.Tensor, masks: np.ndarray, clicks: int) -> list[torch.Tensor]:
    """The prediction after each of ``clicks`` point clicks: the first at the distance-transform centre of each
    (K, H, W) GT mask, each next one at the centre of the largest error (positive where the mask missed, negative
    where it spilled), with the previous low-res logits as mask prompt. -> ``clicks`` (K, H, W) bool tensors."""
    gt = torch.from_numpy(masks).to(embeddings.device)
    size = gt.shape[-1]
    coords, labels = empty_points(len(gt), clicks, gt.device)
    coords[:, 0] = torch.from_numpy(center_points(masks)).to(gt.device)
    labels[:, 0] = 1
    mask_prompt, predictions = None, []
    for click in range(clicks):
        logits, iou, _ = model.decode(embeddings, coords[:, :click + 1], labels[:, :click + 1], None, mask_prompt)
        chosen = best_mask(logits, iou)
        predictions.append(upsample(chosen, size) > 0)
        if click + 1 < clicks:
            errors = (predictions[-1] ^ gt).cpu().numpy()
            coords[:, click + 1] = torch.from_numpy(center_points(errors)).to(gt.device)
            rows = torch.arange(len(gt))
            x, y = coords[:, click + 1, 0].long(), coords[:, click + 1, 1].long()
            labels[:, click + 1] = gt[rows, y, x].float()
            mask_prompt = chosen[:, None]
    return predictions


def click_curve(model: Sam, dataset, clicks: int = 5) -> list[float]:
    """mIoU vs GT after 1, 2, ..., ``clicks`` clicks (``click_predictions``) over every instance of ``dataset``:
    entry k - 1 equals ``prompted_ious(model, dataset, "point", clicks=k)``'s mean."""
    by_click = prompted_ious(model, dataset, "point", clicks)["iou_by_click"]  # (clicks, K)
    return [float(ious.mean()) if ious.size else 0.0 for ious in by_click]


@torch.no_grad()
def iou_calibration(model: Sam, dataset, prompt: str = "point") -> dict[str, float]:
    """How well the IoU head predicts the kept mask's IoU with the ground truth: one distance-transform centre
    point or one tight box per instance, the mask with the highest predicted IoU kept (SAM protocol).
    -> "abs_error": mean |predicted - actual|, "bias": mean (predicted - actual) (> 0: over-confident),
    "predicted" and "actual": the means, "instances"."""
    predicted, actual = [], []
    for sample, image, gt in samples_with_masks(model, dataset):
        logits, scores = decode_one_prompt(model, model.encode(model.preprocess(image)), sample.masks, prompt)
        predicted.append(scores.max(dim=1).values.cpu())  # (K,) the kept mask's predicted IoU
        actual.append(binary_iou(upsample(best_mask(logits, scores), gt.shape[-1]) > 0, gt).cpu())
    if not predicted:
        return {"abs_error": 0.0, "bias": 0.0, "predicted": 0.0, "actual": 0.0, "instances": 0}
    predicted_all, actual_all = torch.cat(predicted).double(), torch.cat(actual).double()
    return {"abs_error": float((predicted_all - actual_all).abs().mean()),
            "bias": float((predicted_all - actual_all).mean()), "predicted": float(predicted_all.mean()),
            "actual": float(actual_all.mean()), "instances": len(actual_all)}


def upsample(low_res: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(low_res[:, None], (size, size), mode="bilinear", align_corners=False)[:, 0]


def count_macs(model: Sam, prompts: int = 1) -> dict[str, float]:
    """Multiply-accumulates of one image encoding and of decoding ``prompts`` point prompts (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = model.image_size
    image = torch.zeros(1, 3, size, size, device=model.pixel_mean.device)
    with FlopCounterMode(display=False) as counter:  # (its module tracker fails under no_grad)
        embeddings = model.encode(image)
    encoder = counter.get_total_flops() / 2
    coords = torch.zeros(prompts, 1, 2, device=image.device)
    with FlopCounterMode(display=False) as counter:  # (its module tracker fails under no_grad)
        model.decode(embeddings, coords, torch.ones(prompts, 1, device=image.device))
    decoder = counter.get_total_flops() / 2
    embeddings = embeddings.detach()
    return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}


def median_latency(function, repeats: int = 5, warmup: int = 2) -> float:
    """Median wall seconds of ``function()`` after warm-up (CUDA synchronised when in use)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
