"""TinySAM report: the int8 sections (full-size float / int8 latency, where the float and int8 graphs spend their
time, the int8 schemes tried)."""

from __future__ import annotations

from tinysam_markdown import table


def full_size_caption(full: dict) -> list[str]:
    if "repeats" not in full:  # reports written before the paired timing: 3 separate calls each
        return ["Full-size TinySAM layout (random weights, speed only; 3 calls each, medians):", ""]
    return [f"Full-size TinySAM layout (random weights, speed only; {full['threads']} thread(s); each float / int8 "
            f"pair timed alternately, {full['repeats']} calls each after {full['warmup']} warm-up calls, medians):",
            ""]


def profile_paragraph(profile: dict | None) -> list[str]:
    if not profile:
        return []
    top = ", ".join(f"{op} {ms:.2f}" for op, ms in profile["top_ops_ms"].items())
    return [f"Where the float onnxruntime graphs of the benchmark-size student spend their time (node profiler, one "
            f"thread, random weights, one image encoding + one point-prompt decoding, mean of {profile['runs']} calls): "
            f"{profile['node_ms_per_call']:.2f} ms in nodes; MatMul / Gemm {100 * profile['matmul_gemm_share']:.0f}% "
            f"(products with a weight, the ones int8 replaces: {100 * profile['weight_product_share']:.0f}%), "
            f"convolutions {100 * profile['conv_share']:.0f}%; largest operator types (ms): {top}. "
            f"Even if every int8 product took no time, the graphs could run at most "
            f"**{profile['ceiling_weight_products']:.2f}x** faster ({profile['ceiling_matmul_gemm']:.2f}x with "
            f"attention's activation products quantized too, {profile['ceiling_matmul_gemm_conv']:.2f}x with "
            "convolutions as well; Amdahl's bound, before the runtime's per-call overhead outside the nodes). "
            + kernel_gain_sentence(profile)
            + ("At this model size the 1.5x target is out of reach for int8 kernels, whatever they quantize; the "
               "full-size layout above, where the matrix products take a larger share of the time, gains more."
               if profile["ceiling_matmul_gemm_conv"] < 1.5 else
               "The bound leaves room for the 1.5x target; the measured gap is the int8 kernels' own."), ""]


def kernel_gain_sentence(profile: dict) -> str:
    """What the shipped int8 kernels gain on the products they replace (same profiler), when measured."""
    if profile.get("int8_product_kernel_speedup") is None:
        return ""
    def ms(value: float) -> str:
        return f"{value:.0f}" if value >= 10 else f"{value:.2f}"
    return (f"Measured in the same profile, the shipped int8 graphs spend {ms(profile['int8_product_ms'])} ms in the "
            f"integer products (the quantization of their activations included) where the float graphs spend "
            f"{ms(profile['weight_product_ms'])} ms in the products they replace: the int8 kernels run them at "
            f"{profile['int8_product_kernel_speedup']:.2f}x the float speed, and the node time goes from "
            f"{ms(profile['node_ms_per_call'])} to {ms(profile['int8_node_ms_per_call'])} ms "
            f"({profile['int8_node_speedup']:.2f}x). ")


def variants_verdict(rows: list[dict]) -> str:
    shipped = rows[0]
    best = max(rows, key=lambda row: row["speedup"])
    close = [row["scheme"] for row in rows[1:] if row["speedup"] >= 0.97 * shipped["speedup"]]
    # within 3% of each other the order of two schemes changes from run to run on this machine
    ties = (f" `{'`, `'.join(close)}` runs about as fast (within 3%)." if close else "")
    if best is shipped or best["speedup"] < 1.03 * shipped["speedup"]:
        return ("The shipped scheme is the fastest here or within 3% of it." + ties + " The others add quantize / "
                "dequantize steps (both inputs of attention's products each call, or around each quantized "
                "operator), and on this CPU those cost more than the integer kernels save.")
    return (f"Here `{best['scheme']}` is faster than the shipped scheme ({best['speedup']:.2f}x vs "
            f"{shipped['speedup']:.2f}x over float).")


def full_size_int8_paragraphs(profile: dict | None, variants: dict | None) -> list[str]:
    """The full-size encoder + decoder's Amdahl bound and the int8 schemes tried on the full-size encoder."""
    lines = []
    if profile:
        lines += [f"At full size the float graphs (image encoder + one-prompt decoder) spend "
                  f"{100 * profile['weight_product_share']:.0f}% of their node time "
                  f"(one thread, mean of {profile['runs']} calls: {profile['node_ms_per_call']:.0f} ms) in the "
                  f"products with a weight and {100 * profile['conv_share']:.0f}% in convolutions: int8 weight "
                  f"products can make them at most **{profile['ceiling_weight_products']:.2f}x** faster "
                  f"({profile['ceiling_matmul_gemm']:.2f}x with attention's activation products, "
                  f"{profile['ceiling_matmul_gemm_conv']:.2f}x with convolutions as well). "
                  + kernel_gain_sentence(profile), ""]
    if variants:
        lines += [f"Int8 schemes tried on the full-size image encoder (onnxruntime, {variants['threads']} thread(s), "
                  f"each timed alternately with the float graph, {variants['repeats']} calls each after "
                  f"{variants['warmup']} warm-up calls, medians; `benchmarks/tinysam_int8_variants.py` says what each "
                  "scheme quantizes):", "",
                  table(variants["rows"], [("scheme", "scheme", ""), ("float32 ms", "float32_ms", "{:.0f}"),
                                           ("int8 ms", "encoder_ms", "{:.0f}"), ("speed-up", "speedup", "{:.2f}x")]),
                  "",
                  variants_verdict(variants["rows"]), ""]
    return lines
