"""``slimlab sam quantize``: W8A8 fake quantization with a saved scale table, real int8 onnxruntime graphs, or a
real int8 image encoder for inductor (PT2E static W8A8)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_directory


def calibration_batch(model, count: int, folder: str | None):
    """Preprocessed calibration images and two centre-point prompts per image (from GT masks when present)."""
    from slimlab.sam.data import FolderDataset
    from slimlab.sam.evaluate import center_points
    from slimlab.sam.shapes import ShapesDataset

    dataset = FolderDataset(folder, model.image_size) if folder else ShapesDataset(count, "calib", model.image_size)
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in samples])
    coords, owners = [], []
    rng = np.random.default_rng(0)
    for index, sample in enumerate(samples):
        points = center_points(sample.masks[:2]) if len(sample.masks) else \
            rng.uniform(0, model.image_size - 1, size=(2, 2)).astype(np.float32)
        coords.append(torch.from_numpy(points))
        owners += [index] * len(points)
    coords = torch.cat(coords)[:, None, :]
    return model.preprocess(images), coords, torch.ones(coords.shape[:2]), torch.tensor(owners)


def check_quantize_flags(args: argparse.Namespace) -> None:
    """Refuse fake-quantization settings that --int8-onnx / --int8-inductor (their own int8 schemes) or a
    non-search method would silently ignore, then fill in the defaults."""
    if args.int8_onnx and args.int8_inductor:
        raise SlimlabError("--int8-onnx and --int8-inductor are two runtimes' int8 paths; choose one per run")
    real = "--int8-onnx" if args.int8_onnx else "--int8-inductor" if args.int8_inductor else None
    if real:
        ignored = [flag for flag, value in (("--method", args.method), ("--candidates", args.candidates),
                                            ("--rounds", args.rounds), ("--no-twin", args.no_twin or None))
                   if value is not None]
        if args.bits not in (None, 8):
            ignored.insert(0, f"--bits {args.bits}")
        if ignored:
            raise SlimlabError(f"{', '.join(ignored)}: settings of the calibrated fake quantization; {real} has its "
                               f"own 8-bit scheme (no search), so drop them or drop {real}")
    elif args.method not in (None, "search") and (args.candidates is not None or args.rounds is not None):
        raise SlimlabError(f"--candidates / --rounds set the grid search; --method {args.method} does not search")
    args.bits = 8 if args.bits is None else args.bits
    args.method = args.method or "search"
    args.candidates = 100 if args.candidates is None else args.candidates
    args.rounds = 3 if args.rounds is None else args.rounds


def quantize_command(argv: list[str]) -> int:
    from slimlab.sam.build import load_model
    from slimlab.sam.quantize import calibrate
    from slimlab.sam.scale_tables import save_scale_table

    parser = argparse.ArgumentParser(prog="slimlab sam quantize", description="post-training W8A8 (or WnAn) "
                                     "fake quantization with calibrated scales; saves float weights + a JSON scale "
                                     "table (never a pickled module)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", help="layout name when the file does not say")
    parser.add_argument("--bits", type=int, help="weight and activation bits (default 8: W8A8; 6: W6A6)")
    parser.add_argument("--method", choices=["minmax", "percentile", "search"], help="default search")
    parser.add_argument("--no-twin", action="store_true", help="plain uniform quantizers after softmax / GELU")
    parser.add_argument("--calibration-images", type=int, default=8)
    parser.add_argument("--images", help="folder of calibration images (default: ShapesSA)")
    parser.add_argument("--candidates", type=int, help="--method search: grid points per scale (default 100)")
    parser.add_argument("--rounds", type=int, help="--method search: passes over all layers (default 3)")
    parser.add_argument("--int8-onnx", action="store_true",
                        help="instead: export ONNX graphs and quantize them to real int8 (onnxruntime dynamic "
                             "MatMul); writes encoder.onnx, decoder.onnx and encoder_int8.onnx, decoder_int8.onnx")
    parser.add_argument("--int8-inductor", action="store_true",
                        help="instead: quantize the image encoder to static int8 for inductor (PT2E; x86 CPU; depthwise "
                             "convolutions stay float) and "
                             "write encoder_int8.pt2, used by `slimlab sam segment --int8-encoder` with this "
                             "checkpoint (needs a C++ compiler)")
    parser.add_argument("--out", default="runs/sam_quantized")
    args = parser.parse_args(argv)
    check_quantize_flags(args)
    for flag, value, least in (("--calibration-images", args.calibration_images, 1), ("--candidates", args.candidates, 1),
                               ("--rounds", args.rounds, 0), ("--bits", args.bits, 2)):
        if value < least:
            raise SlimlabError(f"{flag} {value}: must be at least {least}")
    model = load_model(args.checkpoint, args.model)
    images, coords, labels, owners = calibration_batch(model, args.calibration_images, args.images)
    if args.int8_onnx:
        return int8_onnx(model, images, coords, labels, owners, args.out, (args.checkpoint, args.images))
    if args.int8_inductor:
        return int8_inductor(model, images, coords, labels, owners, args.out, (args.checkpoint, args.images))
    quantized, table = calibrate(model, images, coords, labels, owners, args.bits, args.method, not args.no_twin,
                                 args.candidates, args.rounds)
    with torch.no_grad():
        reference = model.decode(model.encode(images)[owners], coords, labels)[0] > 0
        output = quantized.decode(quantized.encode(images)[owners], coords, labels)[0] > 0
    agreement = float((reference & output).sum() / (reference | output).sum().clamp(min=1))
    with atomic_directory(args.out, overwrite=True, inputs=(args.checkpoint, args.images)) as folder:
        torch.save({"spec": dict(model.spec), "model": model.state_dict()}, folder / "model.pth")
        save_scale_table(table, folder / "scales.json")
        (folder / "quantize.json").write_text(json.dumps(
            {"bits": args.bits, "method": args.method, "twin": not args.no_twin,
             "calibration_mask_iou_vs_float": agreement, "quantizers": len(table)}, indent=1))
    print(f"calibrated {len(table)} quantizers ({args.method}, W{args.bits}A{args.bits}); mask IoU vs float on the "
          f"calibration prompts {agreement:.4f}; wrote {args.out}/model.pth and scales.json")
    return 0


@torch.no_grad()
def agreement_with_float(model, runtime, images, coords, labels, owners) -> float:
    """IoU of the int8 runtime's masks with the float model's over every calibration prompt, one image at a time
    (the exported / compiled graphs take one image)."""
    intersection = union = 0.0
    for index in range(len(images)):
        chosen = owners == index
        if not bool(chosen.any()):
            continue
        reference = model.decode(model.encode(images[index:index + 1]), coords[chosen], labels[chosen])[0] > 0
        output = runtime.decode(runtime.encode(images[index:index + 1]), coords[chosen], labels[chosen])[0] > 0
        intersection += float((reference & output).sum())
        union += float((reference | output).sum())
    return intersection / max(union, 1.0)


def int8_onnx(model, images, coords, labels, owners, out: str, inputs: tuple) -> int:
    """Float + int8 ONNX graphs in ``out``; prints the int8 masks' IoU with the float model's on the prompts."""
    from slimlab.sam.onnx_runtime import OnnxRuntimeSam

    with atomic_directory(out, overwrite=True, inputs=inputs) as folder:
        runtime = OnnxRuntimeSam.from_model(model, folder, int8=True)
        agreement = agreement_with_float(model, runtime, images, coords, labels, owners)
        (folder / "quantize.json").write_text(json.dumps(
            {"backend": "onnxruntime dynamic int8 (MatMul, Gemm; per-channel weights)", "calibration_mask_iou_vs_float": agreement},
            indent=1))
    print(f"wrote {out}/encoder_int8.onnx and decoder_int8.onnx (and the float graphs); mask IoU vs float on "
          f"{len(images)} images' prompts {agreement:.4f}")
    return 0


def int8_inductor(model, images, coords, labels, owners, out: str, inputs: tuple) -> int:
    """``encoder_int8.pt2`` in ``out`` (static scales from ``images``); prints the masks' IoU with the float model's
    on the calibration prompts."""
    from slimlab.sam.inductor_int8 import InductorSam, depthwise_convolutions, quantize_encoder

    program = quantize_encoder(model.image_encoder, images)
    with atomic_directory(out, overwrite=True, inputs=inputs) as folder:
        InductorSam.save(program, model, folder / "encoder_int8.pt2")
        # the archive as written, compiled as `segment --int8-encoder` compiles it (the float decoder left eager:
        # compiling it would change nothing but rounding)
        runtime = InductorSam.load(model, folder / "encoder_int8.pt2", compile_decoder=False)
        agreement = agreement_with_float(model, runtime, images, coords, labels, owners)
        (folder / "quantize.json").write_text(json.dumps(
            {"backend": "inductor static int8 (PT2E x86 quantizer: per-channel weights, per-tensor activations; "
                        "image encoder)", "calibration_images": len(images),
             "float_layers": depthwise_convolutions(model.image_encoder),
             "calibration_mask_iou_vs_float": agreement}, indent=1))
    print(f"wrote {out}/encoder_int8.pt2; mask IoU vs float on {len(images)} images' prompts {agreement:.4f}")
    return 0
