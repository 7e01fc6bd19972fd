"""Post-training quantization (Q-TinySAM): W8A8 fake quantization with calibrated scales, and a real int8 path.

Fake quantization (quantize-dequantize in float, as the official release does) covers every Linear, Conv2d and
ConvTranspose2d (weights per output channel, symmetric; inputs per tensor, asymmetric for convolutions) and both
attention matmuls (Q K^T and softmax V; Q, K, V get head-wise scales in TinyViT and the mask decoder, per tensor in
SAM's ViT encoder, which folds the heads into the batch axis). Twin-uniform quantizers
handle post-softmax probabilities and post-GELU inputs. Scales come from min-max, a percentile, or the paper's
alternating grid search over [0.01, 1.2] x max / 2^(b-1) that minimises KL(mask) + KL(IoU) between quantized and
float outputs on a few calibration images. The real int8 path is torch.ao dynamic quantization of Linear layers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimlab.core.errors import SlimlabError

GELU_NEGATIVE_SCALE = 0.16997 / 128  # GELU's minimum is -0.16997: negatives get this fixed step (8 bits)
RESERVOIR = 4096


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, bits: int, zero_point: torch.Tensor | None = None):
    """Symmetric x_q = clip(round(x / s), -2^(b-1), 2^(b-1) - 1) * s, or asymmetric with an integer offset."""
    if zero_point is None:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return torch.clamp(torch.round(x / scale), low, high) * scale
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 2 ** bits - 1)
    return (q - zero_point) * scale


class ActivationQuantizer(nn.Module):
    """Observes a tensor during calibration, then fake-quantizes it. ``kind``: uniform | conv (asymmetric) |
    softmax (twin uniform on [0, 1]) | gelu (twin: own scale for positives, fixed step for negatives)."""

    def __init__(self, bits: int, kind: str = "uniform", head_axis: int | None = None) -> None:
        super().__init__()
        self.bits, self.kind, self.head_axis = bits, kind, head_axis
        self.observing, self.enabled = False, True
        self.max_abs = self.low = self.high = None
        self.samples: list[torch.Tensor] = []
        self.scale: torch.Tensor | None = None
        self.zero_point: torch.Tensor | None = None
        self.fine_scale: torch.Tensor | None = None  # twin softmax: the finer step below the split

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        if self.head_axis is not None and x.dim() > self.head_axis:
            dims = [d for d in range(x.dim()) if d != self.head_axis]
            per_head = x.abs().amax(dim=dims)
            self.max_abs = per_head if self.max_abs is None else torch.maximum(self.max_abs, per_head)
        else:
            value = x.abs().max()
            self.max_abs = value if self.max_abs is None else torch.maximum(self.max_abs, value)
        low, high = x.min(), x.max()
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)
        flat = x.flatten()
        self.samples.append(flat[torch.randint(0, flat.numel(), (RESERVOIR,), generator=torch.Generator()
                                               .manual_seed(len(self.samples)))].cpu())

    def reference_scale(self, percentile: float | None = None) -> torch.Tensor:
        """The natural step of this quantizer: max|x| / (2^(b-1) - 1) (or a percentile of |x| instead of the max);
        for conv inputs (asymmetric) (max - min) / (2^b - 1); for softmax 1 / (2^(b-1) - 1)."""
        levels = 2 ** (self.bits - 1) - 1
        if self.kind == "softmax":
            return torch.tensor(1.0 / levels)
        if self.kind == "conv":
            return ((self.high - self.low) / (2 ** self.bits - 1)).clamp(min=1e-8)
        if percentile is not None:
            values = torch.cat(self.samples).abs()
            return (torch.quantile(values, percentile / 100) / levels).clamp(min=1e-8)
        return (self.max_abs / levels).clamp(min=1e-8)

    def set_scale(self, scale: torch.Tensor) -> None:
        self.scale = scale
        if self.kind == "conv":  # the offset puts the observed minimum on level 0
            self.zero_point = torch.round(-self.low / scale).clamp(0, 2 ** self.bits - 1)

    def shaped(self, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if scale.dim() == 0 or self.head_axis is None:
            return scale
        shape = [1] * x.dim()
        shape[self.head_axis] = -1
        return scale.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.observe(x)
            return x
        if not self.enabled or self.scale is None:
            return x
        if self.kind == "conv":
            return fake_quantize(x, self.scale, self.bits, self.zero_point)
        if self.kind == "softmax":  # twin uniform: [0, split) with the fine step, [split, 1] with 1/2^(b-1)
            coarse = torch.tensor(1.0 / (2 ** (self.bits - 1) - 1))
            fine = self.fine_scale if self.fine_scale is not None else coarse / 16
            split = fine * (2 ** (self.bits - 1) - 1)
            return torch.where(x < split, fake_quantize(x, fine, self.bits), fake_quantize(x, coarse, self.bits))
        if self.kind == "gelu":
            negative_step = torch.tensor(GELU_NEGATIVE_SCALE * 2 ** (8 - self.bits))
            return torch.where(x < 0, fake_quantize(x, negative_step, self.bits),
                               fake_quantize(x, self.shaped(self.scale, x), self.bits))
        return fake_quantize(x, self.shaped(self.scale, x), self.bits)


class QuantizedLayer(nn.Module):
    """Wraps a Linear / Conv2d / ConvTranspose2d: input quantizer, per-output-channel weight fake quantization."""

    def __init__(self, layer: nn.Module, bits: int, input_kind: str) -> None:
        super().__init__()
        self.layer, self.bits = layer, bits
        self.input_quantizer = ActivationQuantizer(bits, input_kind)
        self.channel_axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
        weight = layer.weight.detach()
        dims = [d for d in range(weight.dim()) if d != self.channel_axis]
        self.weight_max = weight.abs().amax(dim=dims, keepdim=True).clamp(min=1e-8)
        self.weight_ratio = 1.0  # searched multiplier of the min-max weight scale
        self.float_weight = weight.clone()
        self.quantize_weight()

    def quantize_weight(self) -> None:
        scale = self.weight_max * self.weight_ratio / (2 ** (self.bits - 1) - 1)
        with torch.no_grad():
            self.layer.weight.copy_(fake_quantize(self.float_weight, scale, self.bits))

    def use_float_weight(self) -> None:
        with torch.no_grad():
            self.layer.weight.copy_(self.float_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.input_quantizer(x))


def prepare(model: nn.Module, bits: int = 8, twin: bool = True) -> tuple[nn.Module, dict[str, nn.Module]]:
    """A deep copy of ``model`` with every layer and attention matmul wrapped for fake quantization.
    -> (model, {name: QuantizedLayer or ActivationQuantizer}) in execution-friendly (module) order."""
    if bits < 2 or bits > 16:
        raise SlimlabError(f"bits={bits}: choose between 2 and 16 (8 = W8A8, 6 = W6A6)")
    model = copy.deepcopy(model).eval()
    quantizers: dict[str, nn.Module] = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if full.endswith("image_encoder.head"):  # the unused classifier
                continue
            if isinstance(child, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                after_gelu = child_name in ("fc2", "lin2")
                kind = "conv" if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)) else \
                    ("gelu" if after_gelu and twin else "uniform")
                wrapper = QuantizedLayer(child, bits, kind)
                setattr(module, child_name, wrapper)
                quantizers[full] = wrapper
        if hasattr(module, "num_heads") and any(isinstance(c, (nn.Linear, QuantizedLayer))
                                                for c in module.children()):
            head_axis = 1  # (B, nH, N, d) layouts; the ViT encoder folds heads into the batch axis
            from slimlab.sam.vit_encoder import Attention as VitAttention
            if isinstance(module, VitAttention):
                head_axis = None
            module.matmul_quantizers = {
                "q": ActivationQuantizer(bits, "uniform", head_axis), "k": ActivationQuantizer(bits, "uniform", head_axis),
                "v": ActivationQuantizer(bits, "uniform", head_axis),
                "probabilities": ActivationQuantizer(bits, "softmax" if twin else "uniform")}
            for key, quantizer in module.matmul_quantizers.items():
                quantizers[f"{name}.matmul.{key}"] = quantizer
    return model, quantizers


def activation_quantizers(quantizers: dict[str, nn.Module]) -> dict[str, ActivationQuantizer]:
    return {name: (q.input_quantizer if isinstance(q, QuantizedLayer) else q) for name, q in quantizers.items()}


def output_divergence(reference: tuple[torch.Tensor, torch.Tensor], quantized: tuple[torch.Tensor, torch.Tensor]):
    """KL(mask_fp || mask_q) + KL(iou_fp || iou_q), each pixel / IoU read as a Bernoulli probability."""
    def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        p, q = p.clamp(1e-6, 1 - 1e-6), q.clamp(1e-6, 1 - 1e-6)
        return (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    return float(bernoulli_kl(reference[0].sigmoid(), quantized[0].sigmoid())
                 + bernoulli_kl(reference[1], quantized[1]))


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, owners: torch.Tensor,
              bits: int = 8, method: str = "search", twin: bool = True, candidates: int = 100, rounds: int = 3,
              theta: tuple[float, float] = (0.01, 1.2), percentile: float = 99.99,
              search_scope: str = "") -> tuple[nn.Module, dict]:
    """Fake-quantized copy of ``model`` calibrated on preprocessed ``images`` (B, 3, S, S) with point prompts
    ``coords`` (P, N, 2) / ``labels`` (P, N) belonging to image ``owners`` (P,).

    method: minmax (per-tensor max) | percentile | search (alternating grid search of weight and input scales,
    one layer at a time, minimising KL(mask) + KL(IoU) against the float model's outputs). ``search_scope``
    limits the search to quantizers whose name starts with it (the others keep their min-max scales).
    """
    if method not in ("minmax", "percentile", "search"):
        raise SlimlabError(f"unknown calibration method '{method}' (minmax, percentile or search)")
    float_embeddings = model.encode(images)
    float_logits, float_iou, _ = model.decode(float_embeddings[owners], coords, labels)
    reference = (float_logits, float_iou)
    quantized, layers = prepare(model, bits, twin)
    acts = activation_quantizers(layers)
    for quantizer in acts.values():
        quantizer.observing = True
    for layer in layers.values():
        if isinstance(layer, QuantizedLayer):
            layer.use_float_weight()
    quantized.decode(quantized.encode(images)[owners], coords, labels)  # observe float activations
    for layer in layers.values():
        if isinstance(layer, QuantizedLayer):
            layer.quantize_weight()
    for quantizer in acts.values():
        quantizer.observing = False
        if quantizer.max_abs is None:  # never reached by the calibration prompts (e.g. the mask-prompt path)
            continue
        quantizer.set_scale(quantizer.reference_scale(percentile if method == "percentile" else None))
    if method == "search":
        scoped = {name: layer for name, layer in layers.items() if name.startswith(search_scope)}
        grid_search(quantized, scoped, images, coords, labels, owners, reference, candidates, rounds, theta)
    for quantizer in acts.values():
        quantizer.samples = []  # calibration data is not part of the model
    return quantized, scale_table(layers)


def grid_search(quantized, layers, images, coords, labels, owners, reference, candidates, rounds, theta) -> None:
    """Alternating search: for each layer, its weight-scale multiplier, then its input scale (and the fine step
    of twin softmax quantizers); decoder layers reuse the cached quantized image embeddings."""
    ratios = torch.linspace(theta[0], theta[1], candidates)
    cache: dict[str, torch.Tensor] = {}

    def loss() -> float:
        if "embeddings" not in cache:
            cache["embeddings"] = quantized.encode(images)[owners]
        logits, iou, _ = quantized.decode(cache["embeddings"], coords, labels)
        return output_divergence(reference, (logits, iou))

    for _ in range(rounds):
        for name, layer in layers.items():
            in_encoder = name.startswith("image_encoder")
            if in_encoder:
                cache.pop("embeddings", None)

            def evaluate() -> float:
                if in_encoder:
                    cache.pop("embeddings", None)
                return loss()
            if isinstance(layer, QuantizedLayer):
                best = (evaluate(), layer.weight_ratio)
                for ratio in ratios.tolist():  # theta * max|w| / 2^(b-1) up to rounding of the level count
                    layer.weight_ratio = ratio
                    layer.quantize_weight()
                    best = min(best, (evaluate(), ratio))
                layer.weight_ratio = best[1]
                layer.quantize_weight()
                quantizer = layer.input_quantizer
            else:
                quantizer = layer
            if quantizer.scale is None:
                continue
            if quantizer.kind == "softmax":
                coarse = 1.0 / (2 ** (quantizer.bits - 1) - 1)
                best_fine = (evaluate(), quantizer.fine_scale)
                for m in range(8):
                    quantizer.fine_scale = torch.tensor(coarse / 2 ** m)
                    best_fine = min(best_fine, (evaluate(), quantizer.fine_scale), key=lambda item: item[0])
                quantizer.fine_scale = best_fine[1]
            else:
                base = quantizer.reference_scale()
                best_scale = (evaluate(), quantizer.scale)
                for ratio in ratios.tolist():
                    quantizer.set_scale(base * ratio)
                    best_scale = min(best_scale, (evaluate(), quantizer.scale), key=lambda item: item[0])
                quantizer.set_scale(best_scale[1])
        cache.pop("embeddings", None)


def scale_table(layers: dict[str, nn.Module]) -> dict:
    """JSON-ready scales: weight multipliers, input scales / zero points, twin fine steps."""
    table = {}
    for name, layer in layers.items():
        quantizer = layer.input_quantizer if isinstance(layer, QuantizedLayer) else layer
        entry = {"kind": quantizer.kind, "bits": quantizer.bits,
                 "scale": None if quantizer.scale is None else quantizer.scale.reshape(-1).tolist()}
        if quantizer.zero_point is not None:
            entry["zero_point"] = float(quantizer.zero_point)
        if quantizer.fine_scale is not None:
            entry["fine_scale"] = float(quantizer.fine_scale)
        if isinstance(layer, QuantizedLayer):
            entry["weight_ratio"] = float(layer.weight_ratio)
        table[name] = entry
    return table


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Real int8 kernels on CPU: torch.ao dynamic quantization of every Linear (int8 weights, int8 activations
    quantized on the fly per batch). Convolutions stay float."""
    import warnings

    from torch.ao.quantization import quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 flags quantized tensor constructors as deprecated
        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def quantization_error(values: torch.Tensor, bits: int) -> float:
    """Max |x - Q(x)| of symmetric per-tensor min-max quantization (at most half a step: max|x| / (2^b - 2))."""
    scale = values.abs().max() / (2 ** (bits - 1) - 1)
    return float((fake_quantize(values, scale, bits) - values).abs().max())
