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


def int8_target_rows(summary: dict, trained_repeats: dict | None = None) -> list[tuple]:
    """Target rows for real int8: onnxruntime at the benchmark size (the headline key), then inductor at the
    benchmark size and on the full-size encoder when measured. mIoU drops are against the PyTorch float model."""
    s = summary
    rows = [("real int8 CPU speed-up (onnxruntime int8 vs the same graphs in float)", f"{s['int8_cpu_speedup']:.2f}x" + (
                f" (at most {s['int8_speedup_ceiling_weight_products']:.2f}x at this size, see below)"
                if "int8_speedup_ceiling_weight_products" in s else ""), ">= 1.5x", s["int8_cpu_speedup"] >= 1.5),
            ("real int8 mIoU drop (points)", f"{100 * s['int8_miou_drop']:.2f}", "<= 1", s["int8_miou_drop"] <= 0.01)]
    if "int8_cpu_speedup_inductor" in s:
        rows += [("real int8 CPU speed-up (inductor static W8A8 vs the same encoder compiled in float; benchmark-size "
                  "student, one image + one point prompt)", f"{s['int8_cpu_speedup_inductor']:.2f}x", ">= 1.5x",
                  s["int8_cpu_speedup_inductor"] >= 1.5),
                 ("real int8 mIoU drop, inductor (points)", f"{100 * s['int8_miou_drop_inductor']:.2f}", "<= 1",
                  s["int8_miou_drop_inductor"] <= 0.01)]
    if s.get("int8_cpu_speedup_full_size_encoder_inductor") is not None:
        rows.append(("real int8 CPU speed-up, inductor, full-size TinySAM image encoder (1024 px; random weights, "
                     "speed only)", f"{s['int8_cpu_speedup_full_size_encoder_inductor']:.2f}x (one image + one "
                     f"point prompt: {s['int8_cpu_speedup_full_size_image_inductor']:.2f}x)", ">= 1.5x",
                     s["int8_cpu_speedup_full_size_encoder_inductor"] >= 1.5))
    if "int8_cpu_speedup_full_size_trained_inductor" in s:
        speedup, drop = s["int8_cpu_speedup_full_size_trained_inductor"], s["int8_miou_drop_full_size_trained_inductor"]
        repeats = sorted((trained_repeats or {}).items(), key=lambda item: int(item[0]))
        rows += [("real int8 CPU speed-up, inductor, full-size TinySAM layout trained here on ShapesSA (1024 px; "
                  "image encoder)", f"{speedup:.2f}x (one image + one point prompt: "
                  f"{s['int8_cpu_speedup_full_size_trained_image_inductor']:.2f}x"
                  + "".join(f"; training seed {seed}: {m['encoder_speedup']:.2f}x" for seed, m in repeats) + ")",
                  ">= 1.5x", speedup >= 1.5),
                 ("real int8 mIoU drop, inductor, the same trained full-size model (points)", f"{100 * drop:.2f}"
                  + "".join(f" (training seed {seed}: {100 * m['int8_miou_drop']:.2f})" for seed, m in repeats),
                  "<= 1", drop <= 0.01)]
    return rows


def trained_full_size_repeat_lines(repeats: dict | None) -> list[str]:
    """One line per repeat of the trained full-size measurement with another training seed."""
    lines = []
    for seed, measured in sorted((repeats or {}).items(), key=lambda item: int(item[0])):
        miou, encoder = measured["miou_point"], measured["encoder_ms"]
        lines.append(f"- training seed {seed} (`{measured['command']}`): one-point mIoU {miou['float32']:.3f} float, "
                     f"{miou['inductor_int8']:.3f} int8 (drop {100 * measured['int8_miou_drop']:.2f} points; mask "
                     f"IoU with float {measured['int8_agreement_with_float']:.3f}); encoder {encoder['float32']:.0f} "
                     f"-> {encoder['int8']:.0f} ms ({measured['encoder_speedup']:.2f}x), per image with one point "
                     f"prompt {measured['image_speedup']:.2f}x.")
    return ["Repeats (the same recipe, another training seed, each in a process of its own):", "", *lines, ""] \
        if lines else []


def trained_full_size_lines(trained: dict | None, full: dict, repeats: dict | None = None) -> list[str]:
    """The int8 encoder of the full-size layout trained on ShapesSA: its mIoU and latency against float (and its
    timing next to the random-weight rows', measured in another process), then its repeats."""
    if not trained:
        return []
    other = "" if "encoder_ms_ind_int8" not in full else (
        f" The random-weight encoder above, same layout and scheme, ran {full['encoder_ms_ind_float32']:.0f} ms float "
        f"and {full['encoder_ms_ind_int8']:.0f} ms int8 ({full['ind_encoder_speedup']:.2f}x) in another process, "
        "after the ONNX exports and the other runtimes. The two differ in weights (trained / random), calibration "
        "images (ShapesSA / random), process and time, which this benchmark does not separate: read the speed-up as "
        "the range of the two.")
    settings, training, miou = trained["settings"], trained["training"], trained["miou_point"]
    rows = [{"variant": "float32 (eager PyTorch)", "miou": miou["float32"]},
            {"variant": "float32 (inductor, compiled)", "miou": miou["inductor_float32"],
             "encoder": trained["encoder_ms"]["float32"], "image": trained["image_ms"]["float32"]},
            {"variant": "real int8 (inductor static W8A8)", "miou": miou["inductor_int8"],
             "agreement": trained["int8_agreement_with_float"], "encoder": trained["encoder_ms"]["int8"],
             "image": trained["image_ms"]["int8"]}]
    return [
        "### int8 on the full-size layout, trained here", "",
        "No trained TinySAM weights install offline, so the full-size rows above time random weights. To measure "
        "the int8 speed-up and its mIoU drop on one model, the full-size TinySAM layout (TinyViT vit_t encoder, "
        f"256-channel decoder) is trained on ShapesSA ground truth: {settings['low_res_steps']} steps of "
        f"{settings['low_res_images_per_step']} images at {settings['low_res']} px "
        f"({training['low_res_seconds'] / 60:.0f} min; one-point mIoU {training['low_res_miou_point']:.3f} on the "
        f"test scenes at {settings['low_res']} px), then {settings['full_size_steps']} steps of one image at 1024 px "
        f"({training['full_size_seconds'] / 60:.0f} min) on ShapesSA drawn at 1024 px (no parameter depends on the "
        "input size). Its encoder is quantized on "
        f"{settings['calibration_images']} calibration images at 1024 px and tested on the {settings['test_images']} "
        "test scenes drawn at 1024 px (one centre point per instance); each float / int8 pair is timed in "
        f"alternation, {settings['repeats']} calls each after {settings['warmup']} warm-up calls (medians).", "",
        table(rows, [("variant", "variant", ""), ("mIoU 1 point (1024 px)", "miou", "{:.3f}"),
                     ("mask IoU vs float", "agreement", "{:.3f}"), ("encoder ms", "encoder", "{:.0f}"),
                     ("one image + one point ms", "image", "{:.0f}")]), "",
        f"int8 speed-up: {trained['encoder_speedup']:.2f}x on the encoder, {trained['image_speedup']:.2f}x per image "
        f"with one point prompt (the float decoder, compiled, in both); mIoU drop "
        f"{100 * trained['int8_miou_drop']:.2f} points. The model is small-data and briefly trained (one-point mIoU "
        f"{miou['float32']:.3f}), so its absolute mIoU says little; the drop is what int8 costs on trained weights "
        "at the size where int8 pays off." + other, "", *trained_full_size_repeat_lines(repeats)]


def full_size_rows(full: dict) -> list[dict]:
    """The full-size float / int8 pairs per runtime and part, as table rows."""
    rows = [{"part": f"{part_name}, {runtime}", "f": full[f"{part}_ms_{prefix}float32"],
             "q": full[f"{part}_ms_{prefix}int8"], "x": full[f"{'ort_' if prefix else ''}{part}_speedup"]}
            for runtime, prefix in (("PyTorch / torch.ao", ""), ("onnxruntime", "ort_"))
            for part, part_name in (("encoder", "image encoder 1024 px"), ("decoder", "mask decoder 16 prompts"))]
    if "ind_encoder_speedup" in full:
        rows += [{"part": "image encoder 1024 px, inductor static W8A8 (vs compiled float)",
                  "f": full["encoder_ms_ind_float32"], "q": full["encoder_ms_ind_int8"], "x": full["ind_encoder_speedup"]},
                 {"part": "one image + one point prompt, inductor (decoder: float, compiled, in both)",
                  "f": full["image_ms_ind_float32"], "q": full["image_ms_ind_int8"], "x": full["ind_image_speedup"]}]
    return rows


def quantization_section(result: dict) -> list[str]:
    """The post-training quantization section: the student's table, the three int8 runtimes, the full-size rows,
    their bounds and the schemes tried."""
    s, full = result["summary"], result["full_size_int8"]
    inductor = "int8_cpu_speedup_inductor" in s
    lines = ["## Post-training quantization (distilled student, hard prompts)", ""]
    if result.get("quantization_command"):
        lines += [f"Measured again afterwards with `{result['quantization_command']}` (teacher and the first-seed "
                  "hard-prompt student retrained with the same seeds, data and steps; both reproduced their stored "
                  "one-point mIoU).", ""]
    lines += [
        table(result["quantization"], [("variant", "variant", ""), ("mIoU 1 point", "miou_point", "{:.3f}"),
                                       ("mask IoU vs float", "agreement_with_float", "{:.3f}"),
                                       ("CPU ms / image", "latency_ms", "{:.2f}"),
                                       ("calibration s", "calibration_seconds", "{:.1f}")]), "",
        "Fake quantization runs quantize-dequantize in float, so it is slower than float. "
        + ("Three" if inductor else "Two") + " real int8 paths: torch.ao dynamic quantization swaps `nn.Linear` "
        "modules only (eager PyTorch); onnxruntime dynamic quantization (`slimlab sam quantize --int8-onnx`) replaces "
        "every MatMul / Gemm with a weight input (per-channel int8 weights, activations quantized per call) by "
        "integer kernels; attention's products of two activations stay float"
        + ("; inductor static W8A8 (`slimlab sam quantize --int8-inductor`, PT2E with torchao's x86 quantizer) "
           "quantizes the image encoder's convolutions and linears (per-channel weights, per-tensor activation "
           "scales observed on the calibration images; the depthwise convolutions stay float, a few percent of the "
           "multiply-adds, bound by memory: in int8 their quantize / dequantize kernels cost more than their products "
           "save) and compiles them with weight freezing into oneDNN int8 "
           "kernels fused with their neighbours; the decoder stays float (compiled the same way in both inductor rows)" if inductor else "")
        + ". Each int8 path is timed against its own float: the onnxruntime int8 graphs against the same graphs in "
        "float" + (", the inductor int8 encoder against the same encoder compiled in float (same freezing)"
                   if inductor else "")
        + ", so each speed-up is the int8 kernels' own (the pairs are timed alternately, 300 calls each after "
        f"warm-up: medians); against the PyTorch float model onnxruntime int8 is "
        f"{s['int8_cpu_speedup_vs_pytorch_float']:.2f}x (torch.ao: {s['int8_cpu_speedup_torch_ao']:.2f}x)."
        + ("" if result.get("onnx_int8_weights") == "per-channel" else
           " This run's onnxruntime int8 row above was measured with one int8 scale per weight matrix, the "
           "default then" + (" (the full-size rows below use per-channel scales)."
                             if full.get("onnx_int8_weights") == "per-channel" else ".")),
        "",
        *full_size_caption(full),
        table(full_size_rows(full), [("part", "part", ""), ("float32 ms", "f", "{:.0f}"), ("int8 ms", "q", "{:.0f}"),
                                     ("speed-up", "x", "{:.2f}x")]), "",
        *inductor_paragraph(s, full),
        *trained_full_size_lines(result.get("trained_full_size_int8"), full,
                                 result.get("trained_full_size_int8_repeats")),
        *inductor_kernel_table(result.get("inductor_kernel_ms")),
        *full_size_int8_paragraphs(result.get("full_size_int8_profile"), result.get("int8_variants")),
        *profile_paragraph(result.get("int8_profile"))]
    return lines


def inductor_paragraph(s: dict, full: dict) -> list[str]:
    """Where inductor's int8 stands against the 1.5x target, by model size."""
    if s.get("int8_cpu_speedup_full_size_encoder_inductor") is None or "int8_cpu_speedup_inductor" not in s:
        return []
    int8_ms = full["encoder_ms_ind_int8"]
    return [f"Inductor's int8 encoder is {s['int8_cpu_speedup_full_size_encoder_inductor']:.2f}x faster than the "
            f"same encoder compiled in float at full size ({s['int8_cpu_speedup_full_size_image_inductor']:.2f}x for "
            f"an image with one point prompt, the compiled float decoder included; across runtimes, not the target's "
            f"measure: {full['encoder_ms_ort_float32'] / int8_ms:.2f}x faster than onnxruntime's float encoder, "
            f"{full['encoder_ms_float32'] / int8_ms:.2f}x faster than eager PyTorch's), but "
            f"{s['int8_cpu_speedup_inductor']:.2f}x on the benchmark-size student, whose products are too small for "
            "int8 kernels to pay back the quantization of their inputs (the bounds below). Its mIoU drop is measured "
            "on the student, at the size the speed-up is not; the quantization scheme is the same at both sizes"
            + (" (the full-size layout trained here measures both on one model: below)"
               if "int8_cpu_speedup_full_size_trained_inductor" in s else "") + ". "
            f"The per-image figure is the less steady one: the one-prompt decoder, float and compiled alike in both, "
            f"took {full['image_ms_ind_float32'] - full['encoder_ms_ind_float32']:.0f} ms in the float runtime and "
            f"{full['image_ms_ind_int8'] - full['encoder_ms_ind_int8']:.0f} ms in the int8 one in this run (image "
            "minus encoder time): inside the benchmark's process, after the ONNX exports and the other runtimes, the "
            "compiled decoder's time varies from run to run and between the two runtimes, so the encoder row is the "
            "steadier measure." + bf16_sentence(full), ""]


def bf16_sentence(full: dict) -> str:
    """The bf16 reference: faster than int8 on CPUs with bf16 matrix units."""
    if "encoder_ms_ind_bf16" not in full:
        return ""
    bf16_ms, int8_ms = full["encoder_ms_ind_bf16"], full["encoder_ms_ind_int8"]
    units = ("this CPU has AMX bf16 tiles" if full.get("cpu_bf16_matrix_units") else
             "this CPU has no AMX bf16 tiles")
    verdict = ("so on such a CPU bf16, not int8, is the faster way to run the encoder; int8's place is CPUs with "
               "int8 dot-product instructions (VNNI) but no bf16 matrix units (none measured here)" if bf16_ms < int8_ms else
               "so int8 stays the faster way to run the encoder here")
    return (f" For reference, not int8: the same float encoder compiled under bf16 autocast took {bf16_ms:.0f} ms "
            f"against {full['encoder_ms_ind_float32_bf16_pair']:.0f} ms for float32 timed alternately with it "
            f"({full['ind_bf16_encoder_speedup']:.2f}x; {units}; int8 above: {int8_ms:.0f} ms), {verdict}.")


def inductor_kernel_table(kernels: dict | None) -> list[str]:
    """Where the compiled full-size encoder spends its time, float against int8, by kernel group."""
    if not kernels:
        return []
    rows = [{"group": group, "f": kernels["float32"][group], "q": kernels["int8"][group]}
            for group in kernels["float32"] if kernels["float32"][group] or kernels["int8"][group]]
    rows.append({"group": "total", "f": sum(kernels["float32"].values()), "q": sum(kernels["int8"].values())})
    total_float, total_int8 = rows[-1]["f"], rows[-1]["q"]
    products = ("int8 convolutions", "int8 linears", "float convolutions", "float linears")
    kept_float = total_float - sum(kernels["float32"][group] for group in products)
    kept_int8 = total_int8 - sum(kernels["int8"][group] for group in products)
    return [f"Where the compiled full-size encoder spends its time (torch profiler with inductor's kernel profile, "
            f"{kernels['threads']} thread(s), mean of {kernels['runs']} calls, self time in ms; profiling slows both):",
            "", table(rows, [("kernel group", "group", ""), ("float32 ms", "f", "{:.0f}"), ("int8 ms", "q", "{:.0f}")]),
            "", f"The int8 graph runs its convolutions and linears ({depthwise_words(kernels)}) "
            f"{(total_float - kept_float) / max(total_int8 - kept_int8, 1e-9):.2f}x as fast as the float one, but "
            f"the rest grows from {kept_float:.0f} to {kept_int8:.0f} ms: " + rest_words(kernels)
            + "the layer norm, softmax and window-copy kernels quantize their outputs for the int8 linears. "
            "Attention's products stay float.",
            ""]


def depthwise_words(kernels: dict) -> str:
    """Which convolutions the int8 graph ran in int8 (profiles stored before the depthwise ones stayed float)."""
    return ("the depthwise convolutions float in both" if kernels["int8"].get("float convolutions") else
            "every one int8")


def rest_words(kernels: dict) -> str:
    """Why the kernels around the products grow, by what the profile shows for GELU."""
    gelu_float, gelu_int8 = (kernels[name]["generated: GELU (+ quantize)"] for name in ("float32", "int8"))
    if gelu_int8 > 1.2 * gelu_float:
        return ("each GELU after an int8 convolution also dequantizes its input and quantizes its output in a kernel "
                "of its own (oneDNN's int8 convolution takes no GELU post-op; inductor fuses GELU into int8 linears "
                "only), and ")
    return ("quantize kernels feed the int8 products (the GELU kernels take about as long as in the float graph), "
            "and ")
