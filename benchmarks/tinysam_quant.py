"""The TinySAM benchmark's quantization part: float vs fake W8A8 vs real int8 on the distilled student (mIoU and
CPU latency), and the float / int8 latency of the full-size TinySAM layout (random weights, speed only).

Real int8 runs on three runtimes, each against its own float: torch.ao dynamic Linear (eager PyTorch),
onnxruntime dynamic MatMul (the same exported graph in float), and inductor static W8A8 (PT2E; the same encoder
compiled in float with the same weight freezing; the decoder is float, compiled likewise, in both)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from slimlab.sam.build import build_model
from slimlab.sam.evaluate import center_points, median_latency, prompted_ious
from slimlab.sam.inductor_int8 import InductorSam, compile_frozen
from slimlab.sam.onnx_runtime import OnnxRuntimeSam
from slimlab.sam.quantize import calibrate, dynamic_int8
from tinysam_bounds import inductor_kernel_times_ms, int8_speedup_ceiling
from tinysam_int8_variants import int8_variant_latency, rotated_latency_ms

ONNX_INT8_WEIGHTS = "per-channel"  # what slimlab.sam.onnx_runtime.quantize_onnx_int8 writes; recorded per run
FULL_SIZE_REPEATS = 10  # timed calls per float / int8 pair at full size (about 0.3-1 s per call on one thread)
FULL_SIZE_PROFILE_RUNS = 5  # profiled calls of the full-size float graphs (about 1.5 s each on one thread)
INDUCTOR_FLOAT_ROW, INDUCTOR_INT8_ROW = "float32 (inductor, compiled)", "real int8 (inductor static W8A8)"
INT8_VARIANT_REPEATS = 20  # timed calls per int8 scheme of the full-size encoder, each alternating with float


def quantization_rows(model, test, calibration, candidates: int) -> list[dict]:
    """Float vs W8A8 fake quantization (three calibrations) vs real int8 (torch.ao dynamic Linear; onnxruntime
    dynamic MatMul next to the same graphs in float; inductor static W8A8 next to the same encoder compiled in
    float): mIoU and CPU latency."""
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in calibration])
    coords, owners = [], []
    for index, sample in enumerate(calibration):
        points = center_points(sample.masks[:4])
        coords.append(torch.from_numpy(points))
        owners += [index] * len(points)
    coords = torch.cat(coords)[:, None, :]
    labels, owners = torch.ones(coords.shape[:2]), torch.tensor(owners)
    images = model.preprocess(images)
    image = torch.zeros(1, 3, model.image_size, model.image_size)
    prompt = (torch.full((1, 1, 2), 64.0), torch.ones(1, 1))

    def latency(candidate) -> float:
        def run():
            with torch.no_grad():
                candidate.decode(candidate.encode(image), *prompt)
        return 1000 * median_latency(run, repeats=9)
    rows = [{"variant": "float32", "miou_point": float(prompted_ious(model, test, "point")["iou"].mean()),
             "latency_ms": latency(model), "calibration_seconds": 0.0}]
    arms = [("W8A8 min-max", {"method": "minmax", "twin": False}),
            ("W8A8 per-channel W + percentile A", {"method": "percentile", "twin": False}),
            ("W8A8 KL grid search (decoder) + twin", {"method": "search", "twin": True,
                                                      "search_scope": "mask_decoder", "candidates": candidates,
                                                      "rounds": 1}),
            ("W6A6 min-max + twin", {"method": "minmax", "twin": True, "bits": 6})]
    for name, options in arms:
        started = time.perf_counter()
        with torch.no_grad():
            quantized, _ = calibrate(model, images, coords, labels, owners, **options)
        seconds = time.perf_counter() - started
        rows.append({"variant": name, "miou_point": float(prompted_ious(quantized, test, "point")["iou"].mean()),
                     "latency_ms": latency(quantized), "calibration_seconds": seconds,
                     "agreement_with_float": float(prompted_ious(quantized, test, "point", reference=model)
                                                   ["agreement"].mean())})
    int8 = dynamic_int8(model)
    with tempfile.TemporaryDirectory(prefix="tinysam-onnx-") as folder:
        candidates_int8 = [("real int8 (torch.ao dynamic Linear)", int8),
                           ("float32 (onnxruntime)", OnnxRuntimeSam.from_model(model, folder, int8=False)),
                           ("real int8 (onnxruntime dynamic MatMul)", OnnxRuntimeSam.from_model(model, folder))]
        # The target compares the two onnxruntime graphs: a millisecond per call, so time them alternately, many
        # times, so that load and drift on the machine hit both alike.
        ort_float, ort_int8 = (candidate for _, candidate in candidates_int8[1:])
        paired = dict(zip((ort_float, ort_int8), paired_latency_ms(
            lambda: ort_float.decode(ort_float.encode(image), *prompt),
            lambda: ort_int8.decode(ort_int8.encode(image), *prompt))))
        inductor_float = InductorSam.from_model(model, int8=False)
        inductor_int8 = InductorSam.from_model(model, images)
        candidates_int8 += [(INDUCTOR_FLOAT_ROW, inductor_float), (INDUCTOR_INT8_ROW, inductor_int8)]
        paired.update(zip((inductor_float, inductor_int8), paired_latency_ms(
            lambda: inductor_float.decode(inductor_float.encode(image), *prompt),
            lambda: inductor_int8.decode(inductor_int8.encode(image), *prompt))))
        for name, candidate in candidates_int8:
            rows.append({"variant": name, "miou_point": float(prompted_ious(candidate, test, "point")["iou"].mean()),
                         "latency_ms": paired[candidate] if candidate in paired else latency(candidate),
                         "calibration_seconds": 0.0,
                         "agreement_with_float": float(prompted_ious(candidate, test, "point", reference=model)
                                                       ["agreement"].mean())})
    return rows


def quantization_summary(rows: list[dict]) -> dict:
    """Summary keys from ``quantization_rows``: each runtime's int8 speed-up over its own float, mIoU drops
    against the PyTorch float model. The headline ``int8_cpu_speedup`` is onnxruntime's (the exported graphs)."""
    by_variant = {row["variant"]: row for row in rows}
    float_row, w8_row = rows[0], rows[1]
    torch_int8 = by_variant["real int8 (torch.ao dynamic Linear)"]
    ort_float, ort_int8 = by_variant["float32 (onnxruntime)"], by_variant["real int8 (onnxruntime dynamic MatMul)"]
    summary = {"int8_cpu_speedup": ort_float["latency_ms"] / ort_int8["latency_ms"],
               "int8_cpu_speedup_vs_pytorch_float": float_row["latency_ms"] / ort_int8["latency_ms"],
               "int8_cpu_speedup_torch_ao": float_row["latency_ms"] / torch_int8["latency_ms"],
               "int8_miou_drop": float_row["miou_point"] - ort_int8["miou_point"],
               "int8_miou_drop_torch_ao": float_row["miou_point"] - torch_int8["miou_point"],
               "w8a8_fake_miou_drop": float_row["miou_point"] - w8_row["miou_point"]}
    if INDUCTOR_INT8_ROW in by_variant:  # runs stored before the inductor path lack these rows
        inductor_float, inductor_int8 = by_variant[INDUCTOR_FLOAT_ROW], by_variant[INDUCTOR_INT8_ROW]
        summary["int8_cpu_speedup_inductor"] = inductor_float["latency_ms"] / inductor_int8["latency_ms"]
        summary["int8_miou_drop_inductor"] = float_row["miou_point"] - inductor_int8["miou_point"]
    return summary


def paired_latency_ms(first, second, repeats: int = 300, warmup: int = 20) -> tuple[float, float]:
    """Median milliseconds of two callables timed in alternation after warm-up."""
    with torch.no_grad():
        times = rotated_latency_ms({"first": first, "second": second}, repeats, warmup)
    return times["first"], times["second"]


def bf16_encoder(model, image: torch.Tensor):
    """A callable running ``model``'s float encoder compiled by inductor under bf16 autocast: not int8, a reference
    for CPUs with bf16 matrix units (AMX), where bf16 may beat int8."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        compiled = compile_frozen(model.image_encoder, image)

    def encode() -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return compiled(image)
    return encode


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU advertises AMX bf16 tiles (Linux' /proc/cpuinfo flags)."""
    try:
        return " amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def full_size_int8_latency(repeats: int, warmup: int) -> dict:
    """Latency of the full-size TinySAM layout (random weights: only speed is measured) in float vs dynamic int8:
    the image encoder at 1024 px and the mask decoder on a 16-prompt batch. Each float / int8 pair is timed in
    alternation (medians), so load on the machine hits both alike. Inductor (``ind_``): the encoder, calibrated on
    four random images, and one image with one point prompt (the decoder is float, compiled, in both); then the
    float encoder against itself compiled under bf16 autocast."""
    model = build_model("vit_t").eval()
    image = torch.randn(1, 3, 1024, 1024)
    coords, labels = torch.rand(16, 1, 2) * 1024, torch.ones(16, 1)
    with torch.no_grad():
        embeddings = model.encode(image)
    out = {"repeats": repeats, "warmup": warmup, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="tinysam-onnx-") as folder:
        pairs = (("", model, dynamic_int8(model)),
                 ("ort_", OnnxRuntimeSam.from_model(model, folder, int8=False), OnnxRuntimeSam.from_model(model, folder)))
        for prefix, float_model, int8_model in pairs:
            out[f"encoder_ms_{prefix}float32"], out[f"encoder_ms_{prefix}int8"] = paired_latency_ms(
                lambda: float_model.encode(image), lambda: int8_model.encode(image), repeats, warmup)
            out[f"decoder_ms_{prefix}float32"], out[f"decoder_ms_{prefix}int8"] = paired_latency_ms(
                lambda: float_model.decode(embeddings, coords, labels),
                lambda: int8_model.decode(embeddings, coords, labels), repeats, warmup)
            for part in ("encoder", "decoder"):
                out[f"{prefix}{part}_speedup"] = out[f"{part}_ms_{prefix}float32"] / out[f"{part}_ms_{prefix}int8"]
    float_model = InductorSam.from_model(model, int8=False)
    int8_model = InductorSam.from_model(model, torch.randn(4, 3, 1024, 1024))
    out["encoder_ms_ind_float32"], out["encoder_ms_ind_int8"] = paired_latency_ms(
        lambda: float_model.encode(image), lambda: int8_model.encode(image), repeats, warmup)
    out["ind_encoder_speedup"] = out["encoder_ms_ind_float32"] / out["encoder_ms_ind_int8"]
    # a reference, not int8, in a pair of its own: timed in one rotation with the other two, the float32 encoder
    # after each bf16 call took 535 ms, more than float32 encoder + decoder in the int8 pair below (533 ms)
    out["encoder_ms_ind_float32_bf16_pair"], out["encoder_ms_ind_bf16"] = paired_latency_ms(
        lambda: float_model.encode(image), bf16_encoder(model, image), repeats, warmup)
    out["ind_bf16_encoder_speedup"] = out["encoder_ms_ind_float32_bf16_pair"] / out["encoder_ms_ind_bf16"]
    out["cpu_bf16_matrix_units"] = cpu_has_bf16_matrix_units()
    # what a user waits for per image with one point prompt: the float decoder is in both, so the gain is smaller
    point = (coords[:1], labels[:1])
    out["image_ms_ind_float32"], out["image_ms_ind_int8"] = paired_latency_ms(
        lambda: float_model.decode(float_model.encode(image), *point),
        lambda: int8_model.decode(int8_model.encode(image), *point), repeats, warmup)
    out["ind_image_speedup"] = out["image_ms_ind_float32"] / out["image_ms_ind_int8"]
    return out


def full_size_int8_measurements(quick: bool) -> dict:
    """The full-size layout's float / int8 latency (torch.ao and onnxruntime), its operator-time bound and the
    onnxruntime int8 schemes on its encoder, under the result keys the report reads."""
    full_size = full_size_int8_latency(*((1, 1) if quick else (FULL_SIZE_REPEATS, 2)))
    full_size["onnx_int8_weights"] = ONNX_INT8_WEIGHTS
    return {"full_size_int8": full_size,
            "full_size_int8_profile": int8_speedup_ceiling("vit_t", 1 if quick else FULL_SIZE_PROFILE_RUNS),
            "inductor_kernel_ms": inductor_kernel_times_ms(1 if quick else FULL_SIZE_PROFILE_RUNS),
            "int8_variants": int8_variant_latency(*((1, 0) if quick else (INT8_VARIANT_REPEATS, 2)))}


def full_size_summary(measurements: dict) -> dict:
    """Summary keys from ``full_size_int8_measurements``' result."""
    full_size, variants = measurements["full_size_int8"], measurements["int8_variants"]
    best = max(variants["rows"], key=lambda row: row["speedup"])
    return {"int8_speedup_ceiling_full_size_weight_products":
            measurements["full_size_int8_profile"]["ceiling_weight_products"],
            "int8_product_kernel_speedup_full_size":
            measurements["full_size_int8_profile"].get("int8_product_kernel_speedup"),
            "int8_cpu_speedup_full_size_encoder_best_scheme": best["speedup"],
            "int8_full_size_encoder_best_scheme": best["scheme"],
            "int8_cpu_speedup_full_size_encoder": full_size["ort_encoder_speedup"],
            "int8_cpu_speedup_full_size_decoder": full_size["ort_decoder_speedup"],
            "int8_cpu_speedup_full_size_encoder_inductor": full_size.get("ind_encoder_speedup"),
            "int8_cpu_speedup_full_size_image_inductor": full_size.get("ind_image_speedup"),
            "int8_cpu_speedup_full_size_encoder_torch_ao": full_size["encoder_speedup"],
            "int8_cpu_speedup_full_size_decoder_torch_ao": full_size["decoder_speedup"]}
