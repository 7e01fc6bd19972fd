"""The TinySAM benchmark's trained full-size int8 check: the int8 speed-up and its mIoU drop on one model.

The benchmark-size student (128 px) is too small for int8 to pay off (its convolutions and matrix products are a
fraction of its time), and the full-size TinySAM layout is timed with random weights (no trained TinySAM weights
install offline). Here the full-size layout (TinyViT vit_t encoder, 256-channel decoder) is trained on ShapesSA
itself: first at 128 px (cheap, batches of 8), then fine-tuned at 1024 px on ShapesSA rendered at 1024 px (the
same layout: no parameter depends on the input size). Its inductor int8 encoder is then measured against the same
encoder compiled in float: one-point mIoU on the test set at 1024 px and the latency of the encoder and of one
image with one point prompt, timed in alternation.
"""

from __future__ import annotations

import time

import torch

from slimlab.sam.build import build_model
from slimlab.sam.evaluate import prompted_ious
from slimlab.sam.inductor_int8 import InductorSam
from slimlab.sam.shapes import ShapesDataset
from slimlab.sam.train import TrainConfig, train_supervised
from tinysam_int8_variants import rotated_latency_ms

FULL_SIZE = 1024
SETTINGS = {
    "default": {"low_res": 128, "low_res_steps": 1500, "low_res_images_per_step": 8, "low_res_train_images": 400,
                "full_size_steps": 150, "full_size_train_images": 150, "full_size_lr": 3e-4,
                "test_images": 40, "calibration_images": 8, "repeats": 10, "warmup": 2},
    "quick": {"low_res": 128, "low_res_steps": 4, "low_res_images_per_step": 2, "low_res_train_images": 8,
              "full_size_steps": 2, "full_size_train_images": 2, "full_size_lr": 3e-4,
              "test_images": 2, "calibration_images": 2, "repeats": 1, "warmup": 1},
}


def train_full_size_layout(settings: dict) -> tuple[torch.nn.Module, dict]:
    """The vit_t layout trained on ShapesSA ground truth at ``low_res`` px, then fine-tuned at 1024 px."""
    seed = settings["seed"]
    torch.manual_seed(seed)
    low_res = build_model("vit_t", image_size=settings["low_res"])
    started = time.perf_counter()
    low_log = train_supervised(low_res, ShapesDataset(settings["low_res_train_images"], "train", settings["low_res"]),
                               TrainConfig(steps=settings["low_res_steps"],
                                           images_per_step=settings["low_res_images_per_step"], seed=seed),
                               f"vit_t layout, {settings['low_res']} px")
    low_seconds = time.perf_counter() - started
    low_res_test = ShapesDataset(settings["test_images"], "test", settings["low_res"])
    low_res_miou = float(prompted_ious(low_res, low_res_test, "point")["iou"].mean())
    model = build_model("vit_t")
    model.load_state_dict(low_res.state_dict())
    started = time.perf_counter()
    full_log = train_supervised(model, ShapesDataset(settings["full_size_train_images"], "train", FULL_SIZE),
                                TrainConfig(steps=settings["full_size_steps"], images_per_step=1,
                                            lr=settings["full_size_lr"], seed=seed + 1),
                                "vit_t layout, 1024 px")
    log = {"low_res_seconds": low_seconds, "full_size_seconds": time.perf_counter() - started,
           "low_res_final_loss": low_log[-1]["loss"] if low_log else None,
           "full_size_final_loss": full_log[-1]["loss"] if full_log else None,
           "low_res_miou_point": low_res_miou}
    return model, log


def trained_full_size_int8(quick: bool = False, seed: int = 0) -> dict:
    """Train the full-size layout (``seed``: initialisation, batches, prompts), then float vs inductor int8 (encoder
    quantized on calibration images at 1024 px): one-point mIoU at 1024 px and latencies. Keys ``*_speedup`` and
    ``int8_miou_drop`` (fraction)."""
    settings = {**SETTINGS["quick" if quick else "default"], "seed": seed}
    model, log = train_full_size_layout(settings)
    test = ShapesDataset(settings["test_images"], "test", FULL_SIZE)
    calibration = ShapesDataset(settings["calibration_images"], "calib", FULL_SIZE)
    images = torch.stack([torch.from_numpy(calibration[i].image).permute(2, 0, 1).float()
                          for i in range(len(calibration))])
    float_model = InductorSam.from_model(model, int8=False)
    int8_model = InductorSam.from_model(model, model.preprocess(images))
    miou = {name: float(prompted_ious(candidate, test, "point")["iou"].mean())
            for name, candidate in (("float32", model), ("inductor_float32", float_model))}
    int8_ious = prompted_ious(int8_model, test, "point", reference=model)  # IoU with GT and with float's masks
    miou["inductor_int8"] = float(int8_ious["iou"].mean())
    agreement = float(int8_ious["agreement"].mean())
    image = model.preprocess(torch.from_numpy(test[0].image).permute(2, 0, 1).float()[None])
    point = (torch.full((1, 1, 2), FULL_SIZE / 2), torch.ones(1, 1))
    with torch.no_grad():
        encoder = rotated_latency_ms({"float32": lambda: float_model.encode(image),
                                      "int8": lambda: int8_model.encode(image)},
                                     settings["repeats"], settings["warmup"])
        per_image = rotated_latency_ms({"float32": lambda: float_model.decode(float_model.encode(image), *point),
                                        "int8": lambda: int8_model.decode(int8_model.encode(image), *point)},
                                       settings["repeats"], settings["warmup"])
    return {"settings": settings, "training": log, "miou_point": miou, "int8_agreement_with_float": agreement,
            "encoder_ms": encoder, "image_ms": per_image,
            "encoder_speedup": encoder["float32"] / encoder["int8"],
            "image_speedup": per_image["float32"] / per_image["int8"],
            "int8_miou_drop": miou["float32"] - miou["inductor_int8"],
            "threads": torch.get_num_threads()}


def trained_full_size_summary(measured: dict) -> dict:
    return {"int8_cpu_speedup_full_size_trained_inductor": measured["encoder_speedup"],
            "int8_cpu_speedup_full_size_trained_image_inductor": measured["image_speedup"],
            "int8_miou_drop_full_size_trained_inductor": measured["int8_miou_drop"],
            "full_size_trained_miou_point": measured["miou_point"]["float32"]}
