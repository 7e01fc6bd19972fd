"""Which onnxruntime int8 scheme is fastest on this CPU: the full-size TinySAM image encoder (1024 px, random
weights: speed only) under six int8 schemes, each timed in alternation with the float32 graph.

- dynamic MatMul / Gemm: what ``slimlab sam quantize --int8-onnx`` ships (per-channel int8 weights, activations
  quantized per call).
- dynamic MatMul / Gemm, per-tensor weights: the same with one scale per weight matrix.
- dynamic MatMul / Gemm + activation products: the same plus attention's products of two activations
  (q k^T, softmax v), both inputs quantized per call.
- dynamic MatMul / Gemm + Conv: the same plus ``ConvInteger`` for every convolution.
- static Conv + dynamic MatMul / Gemm: convolutions as ``QLinearConv`` with calibrated activation scales.
- static QDQ, every operator: onnxruntime's static quantization with QuantizeLinear / DequantizeLinear around
  every operator it supports (attention's products of two activations included), min-max calibration.

Convolution weights are computed from BatchNorm in the exported graph; onnxruntime's pre-processing (constant
folding, shape inference) turns them into initializers first, so the quantizer can reach them.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from slimlab.sam.build import build_model
from slimlab.sam.onnx_export import export_onnx
from slimlab.sam.onnx_runtime import quantize_onnx_int8

CALIBRATION_IMAGES = 4  # random images: the calibrated ranges set the scales, not the speed


def rotated_latency_ms(functions: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per callable, timed in rotation after warm-up (load on the machine hits each alike)."""
    times = {name: [] for name in functions}
    for index in range(warmup + repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            if index >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: 1000 * float(np.median(bucket)) for name, bucket in times.items()}


def quantized_graphs(float_paths: dict[str, Path], folder: Path, side: int) -> dict[str, Path]:
    """Encoder graphs per int8 scheme; the shipped one comes from ``quantize_onnx_int8`` itself."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class RandomImages(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.feeds = iter([{"image": rng.standard_normal((1, 3, side, side)).astype(np.float32)}
                               for _ in range(CALIBRATION_IMAGES)])

        def get_next(self):
            return next(self.feeds, None)

    float_path = Path(float_paths["encoder"])
    folded = folder / "encoder_folded.onnx"
    quant_pre_process(str(float_path), str(folded))
    shipped, per_tensor, activations, with_conv, static_conv, static_all = (
        "dynamic MatMul / Gemm (shipped)", "dynamic MatMul / Gemm, per-tensor weights",
        "dynamic MatMul / Gemm + activation products", "dynamic MatMul / Gemm + Conv",
        "static Conv + dynamic MatMul / Gemm", "static QDQ, every operator")
    paths = {shipped: quantize_onnx_int8(float_paths, folder / "shipped")["encoder"]}
    for index, name in enumerate((per_tensor, activations, with_conv, static_conv, static_all)):
        paths[name] = folder / f"encoder_{index}.onnx"
    dynamic = {"weight_type": QuantType.QInt8, "per_channel": True}
    quantize_dynamic(str(float_path), str(paths[per_tensor]), op_types_to_quantize=["MatMul", "Gemm"],
                     weight_type=QuantType.QInt8, per_channel=False)
    # quantize_dynamic leaves products without a constant input float unless told otherwise
    quantize_dynamic(str(float_path), str(paths[activations]), op_types_to_quantize=["MatMul", "Gemm"],
                     extra_options={"MatMulConstBOnly": False}, **dynamic)
    quantize_dynamic(str(folded), str(paths[with_conv]), op_types_to_quantize=["MatMul", "Gemm", "Conv"], **dynamic)
    convolutions_only = folder / "encoder_static_conv.onnx"
    quantize_static(str(folded), str(convolutions_only), RandomImages(), quant_format=QuantFormat.QOperator,
                    per_channel=True, op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax)
    quantize_dynamic(str(convolutions_only), str(paths[static_conv]), op_types_to_quantize=["MatMul", "Gemm"],
                     **dynamic)
    quantize_static(str(folded), str(paths[static_all]), RandomImages(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return paths


def int8_variant_latency(repeats: int, warmup: int, threads: int | None = None) -> dict:
    """Encoder milliseconds per scheme, next to the float graph's in the same alternation, and the speed-up."""
    import onnxruntime

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # pre-processing hints
    model = build_model("vit_t").eval()
    side = model.image_size
    threads = threads or torch.get_num_threads()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    feeds = {"image": np.random.default_rng(1).standard_normal((1, 3, side, side)).astype(np.float32)}
    with tempfile.TemporaryDirectory(prefix="tinysam-int8-variants-") as scratch:
        float_paths = export_onnx(model, scratch)
        paths = {"float32": float_paths["encoder"], **quantized_graphs(float_paths, Path(scratch), side)}
        sessions = {name: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for name, path in paths.items()}
        run = {name: (lambda session=session: session.run(None, feeds)) for name, session in sessions.items()}
        rows = []
        for name in paths:
            if name == "float32":
                continue
            # each scheme alternates with the float graph alone: in one rotation of all five, the shipped scheme
            # read 1.74x where alternating with float alone gives about 1.4x (the neighbours shift the times)
            milliseconds = rotated_latency_ms({"float32": run["float32"], name: run[name]}, repeats, warmup)
            rows.append({"scheme": name, "float32_ms": milliseconds["float32"], "encoder_ms": milliseconds[name],
                         "speedup": milliseconds["float32"] / milliseconds[name]})
    return {"threads": threads, "repeats": repeats, "warmup": warmup, "rows": rows}
