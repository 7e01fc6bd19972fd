"""Upper bounds behind two TinySAM targets: what int8 kernels can gain, and what hierarchical mode can skip.

Int8: kernels only speed up the operators they replace. onnxruntime's node profiler (one thread) gives each
operator type's time per call of the exported encoder (one image) and decoder (one point prompt), the same calls
the benchmark's latency column times. If the quantized kernels took no time at all, the graphs would run at most
``total / (total - quantized share)`` times faster (Amdahl's bound). Node time excludes the runtime's per-call
overhead outside the nodes, so the real bound is lower still. Speed only: the weights are random.

Hierarchical everything: round 2 skips a dense point only where round 1's confident masks cover it. A model
trained on instance masks covers objects, not background, so the fewest decoder calls it can reach is the sparse
grid plus every dense point outside the ground-truth instances; that count, from the data alone, bounds the
decoder-call reduction of any such model.
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from slimlab.sam.build import build_model
from slimlab.sam.everything import build_point_grid, dense_points
from slimlab.sam.inductor_int8 import InductorSam
from slimlab.sam.onnx_export import export_onnx
from slimlab.sam.onnx_runtime import quantize_onnx_int8

# matrix-product operator types after onnxruntime's graph fusions, and the convolutions the int8 path leaves float
MATMUL_OPS = ("MatMul", "FusedMatMul", "Gemm", "FusedGemm")
WEIGHT_PRODUCTS = "weight products"  # pseudo operator type: the time of the products int8 replaces
CONV_OPS = ("Conv", "FusedConv", "ConvTranspose")
# what the shipped int8 graphs run in place of the weight products (after onnxruntime's fusions): the integer
# products and the per-call quantization of their activations
INT8_PRODUCT_OPS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear")


def weight_product_nodes(path: Path) -> set[str]:
    """Names of the MatMul / Gemm nodes with a weight (initializer) input: the only products onnxruntime's
    dynamic quantization turns into integer kernels. Products of two activations (attention's q k^T and
    softmax v) stay float."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {initializer.name for initializer in graph.initializer}
    return {node.name for node in graph.node
            if node.op_type in ("MatMul", "Gemm") and any(name in weights for name in node.input)}


def node_times_ms(path: Path, feeds: dict, runs: int) -> collections.Counter:
    """Mean milliseconds per call spent in each operator type (onnxruntime profiler, one thread; the first,
    allocating call is among the ``runs``). The key ``WEIGHT_PRODUCTS`` sums the nodes that grew out of a
    weight product of the exported graph (a fused node keeps the original name as its prefix)."""
    import onnxruntime

    products = weight_product_nodes(path)

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            ms = event["dur"] / 1000.0 / runs                        # microseconds -> ms per call
            totals[event["args"].get("op_name", "?")] += ms
            name = event["name"].removesuffix("_kernel_time")
            if name in products or any(name.startswith(product + "/") for product in products):
                totals[WEIGHT_PRODUCTS] += ms
    return totals


def int8_speedup_ceiling(model_name: str = "shapes_student", runs: int = 50) -> dict:
    """Operator-time shares of the float graphs and the Amdahl bounds on any int8 speed-up they imply; the same
    profile of the shipped int8 graphs says how much faster its integer kernels run the products they replace."""
    model = build_model(model_name).eval()
    size = model.image_size
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="tinysam-profile-") as folder:
        paths = export_onnx(model, folder)
        times = node_times_ms(Path(paths["encoder"]), {"image": image}, runs)
        import onnxruntime
        embeddings = onnxruntime.InferenceSession(str(paths["encoder"]), providers=["CPUExecutionProvider"]).run(
            None, {"image": image})[0]                                         # (1, C, h, w)
        mask_side = 4 * embeddings.shape[2]
        decoder_feeds = {"image_embeddings": embeddings,
                         "point_coords": np.full((1, 1, 2), size / 2, np.float32),
                         "point_labels": np.ones((1, 1), np.float32),
                         "mask_input": np.zeros((1, 1, mask_side, mask_side), np.float32),
                         "has_mask_input": np.zeros(1, np.float32)}
        times += node_times_ms(Path(paths["decoder"]), decoder_feeds, runs)
        int8_paths = quantize_onnx_int8(paths, Path(folder) / "int8")
        int8_times = (node_times_ms(int8_paths["encoder"], {"image": image}, runs)
                      + node_times_ms(int8_paths["decoder"], decoder_feeds, runs))
    int8_times.pop(WEIGHT_PRODUCTS, None)
    int8_products = sum(int8_times[op] for op in INT8_PRODUCT_OPS)
    quantized = times.pop(WEIGHT_PRODUCTS, 0.0)
    total = sum(times.values())
    matmul = sum(times[op] for op in MATMUL_OPS)
    conv = sum(times[op] for op in CONV_OPS)
    return {"model": model_name, "runs": runs, "node_ms_per_call": total,
            "matmul_gemm_share": matmul / total, "weight_product_share": quantized / total, "conv_share": conv / total,
            # bounds if the quantized kernels took no time: the weight products (what the shipped path quantizes),
            # every matrix product (attention's too), and every product + the convolutions
            "ceiling_weight_products": total / (total - quantized),
            "ceiling_matmul_gemm": total / (total - matmul), "ceiling_matmul_gemm_conv": total / (total - matmul - conv),
            "top_ops_ms": dict(times.most_common(8)),
            # measured, not bounded: the weight products' time in float and in the int8 kernels (quantization of
            # their activations included), and the whole graphs' node time in both
            "weight_product_ms": quantized, "int8_product_ms": int8_products,
            "int8_product_kernel_speedup": quantized / int8_products if int8_products else None,
            "int8_node_ms_per_call": sum(int8_times.values()),
            "int8_node_speedup": total / sum(int8_times.values())}


# kernel groups of the inductor profile, first match wins (generated kernels are named after the ops they fuse)
INDUCTOR_GROUPS = (("int8 convolutions", ("qconv",)), ("int8 linears", ("qlinear",)),
                   ("float convolutions", ("_convolution_pointwise",)), ("float linears", ("linear",)),
                   ("attention products (float bmm)", ("aten::bmm",)),
                   ("generated: GELU (+ quantize)", ("gelu",)),
                   ("generated: softmax / layer norm / window copies", ("softmax", "layer_norm")),
                   ("generated: other", ("cpp_fused",)))


def inductor_kernel_times_ms(runs: int) -> dict:
    """Where the full-size image encoder compiled by inductor spends its time, float and int8: milliseconds per
    call by kernel group (torch profiler with inductor's kernel profile on; self time; random weights, the int8
    encoder calibrated on two random images). ``other`` is the rest: the compiled graph's Python wrapper and
    small ops."""
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    model = build_model("vit_t").eval()
    image = torch.randn(1, 3, 1024, 1024)
    out = {"runs": runs, "threads": torch.get_num_threads()}
    # compiled here, apart from the timed runtimes: the kernel profile instruments the generated code, which the
    # latency rows must not carry (the flag is read when a graph compiles)
    with inductor_config.patch({"cpp.enable_kernel_profile": True}):
        runtimes = {"float32": InductorSam.from_model(model, int8=False, compile_decoder=False),
                    "int8": InductorSam.from_model(model, torch.randn(2, 3, 1024, 1024), compile_decoder=False)}
    for name, runtime in runtimes.items():
        runtime.encode(image)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(runs):
                runtime.encode(image)
        groups = collections.Counter()
        for event in profiler.key_averages():
            group = next((label for label, keys in INDUCTOR_GROUPS if any(key in event.key for key in keys)), "other")
            groups[group] += event.self_cpu_time_total / 1000 / runs
        out[name] = {group: groups[group] for group, _ in INDUCTOR_GROUPS + (("other", ()),)}
    return out


def hierarchical_prompts(covered: np.ndarray, points_per_side: int) -> int:
    """Decoder prompts of the hierarchical mode when round 1 leaves ``covered`` (H, W) bool: the sparse points,
    then the dense points that fall outside it."""
    height, width = covered.shape
    sparse = build_point_grid(points_per_side // 4, height, width)
    dense = dense_points(sparse, points_per_side, height, width)
    rows, cols = np.round(dense[:, 1]).astype(int), np.round(dense[:, 0]).astype(int)
    return len(sparse) + int((~covered[rows, cols]).sum())


def hierarchical_call_bound(samples: list, points_per_side: int = 16) -> dict:
    """Decoder prompts per image of the full grid vs hierarchical mode when round 1 covers exactly the ground-truth
    instances (``samples``: images with (N, H, W) boolean ``masks``), and the share of image area they cover."""
    hierarchical, areas = [], []
    for sample in samples:
        instances = sample.masks.any(axis=0)                                  # (H, W) union of every instance
        hierarchical.append(hierarchical_prompts(instances, points_per_side))
        areas.append(float(instances.mean()))
    grid = points_per_side ** 2
    return {"images": len(samples), "grid_prompts_per_image": grid,
            "min_hierarchical_prompts_per_image": float(np.mean(hierarchical)),
            "max_call_reduction": grid / float(np.mean(hierarchical)), "instance_area_share": float(np.mean(areas))}
