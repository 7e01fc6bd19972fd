"""Int8 inference through onnxruntime: dynamic int8 quantization of the exported ONNX graphs, and a model
wrapper with ``Sam``'s ``preprocess`` / ``encode`` / ``decode`` interface that runs them.

onnxruntime's dynamic quantization replaces every MatMul / Gemm with a weight input by integer kernels (int8
weights quantized once per output channel, activations quantized per call, int32 accumulation); attention's
products of two activations stay float. It covers the same products as torch.ao's eager dynamic quantization
(``nn.Linear``), but the float and int8 graphs run in the same runtime, so the speed-up measured between them
is the int8 kernels' own.
Convolutions stay float: TinyViT fuses BatchNorm into computed conv weights, which the quantizer cannot fold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes
from slimlab.sam.model import Sam
from slimlab.sam.onnx_export import export_onnx

PARTS = ("encoder", "decoder")


def quantize_onnx_int8(paths: dict[str, Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``encoder_int8.onnx`` and ``decoder_int8.onnx`` (dynamic int8 MatMul / Gemm, per-channel
    weights) atomically."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "run pre-processing" hint
    with tempfile.TemporaryDirectory(prefix="slimlab-int8-") as scratch:
        for part in PARTS:
            if not Path(paths[part]).is_file():
                raise SlimlabError(f"{paths[part]}: no such ONNX file to quantize")
            staged = Path(scratch) / f"{part}_int8.onnx"
            try:
                # per-channel weight scales: lower error than one scale per matrix and, at full TinySAM size,
                # a little faster too (benchmarks/tinysam.py measures both)
                quantize_dynamic(str(paths[part]), str(staged), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul", "Gemm"])
            except Exception as error:  # onnx / onnxruntime raise many types for a bad graph
                raise SlimlabError(f"{paths[part]}: int8 quantization failed: {error}") from error
            result[part] = out_dir / f"{part}_int8.onnx"
            atomic_write_bytes(result[part], staged.read_bytes())
    return result


class OnnxRuntimeSam:
    """Runs exported encoder / decoder graphs; ``preprocess`` and the pixel statistics come from the float model.

    ``decode`` follows ``Sam.decode`` (prompt coordinates in model-input pixels, multimask output); it returns
    ``(low-res logits (P, 3, 4h, 4w), IoU (P, 3), None)``: the exported graph has no output tokens.
    """

    def __init__(self, model: Sam, paths: dict[str, Path], threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        # Spinning worker threads steal the cores the caller's PyTorch threads need; off keeps timings honest.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {part: onnxruntime.InferenceSession(str(paths[part]), options,
                                                            providers=["CPUExecutionProvider"]) for part in PARTS}
        self.image_size, self.pixel_mean, self.pixel_std = model.image_size, model.pixel_mean, model.pixel_std
        self.mask_size = 4 * model.prompt_encoder.image_embedding_size[0]
        self._preprocess = model.preprocess

    @classmethod
    def from_model(cls, model: Sam, folder: str | Path, int8: bool = True, threads: int | None = None):
        """Export ``model`` to ``folder`` (and quantize it when ``int8``), then open the graphs."""
        paths = export_onnx(model.eval(), folder)
        if int8:
            paths = quantize_onnx_int8(paths, folder)
        return cls(model, paths, threads)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return self._preprocess(images)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed -> (B, C, h, w), one graph call per image."""
        outputs = [self.sessions["encoder"].run(None, {"image": image[None].cpu().numpy()})[0] for image in images]
        return torch.from_numpy(np.concatenate(outputs))

    def decode(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_inputs: torch.Tensor | None = None, multimask_output: bool = True):
        if not multimask_output:
            raise SlimlabError("the exported decoder has multimask output; call decode(multimask_output=True)")
        if image_embeddings.shape[0] != 1:
            raise SlimlabError(f"the ONNX decoder takes one image's embeddings, got {image_embeddings.shape[0]}")
        coords, labels = self._prompt_points(point_coords, point_labels, boxes)
        count = coords.shape[0]
        if mask_inputs is None:
            mask_input = np.zeros((count, 1, self.mask_size, self.mask_size), np.float32)
            has_mask = np.zeros(1, np.float32)
        else:
            mask_input, has_mask = mask_inputs.cpu().numpy().astype(np.float32), np.ones(1, np.float32)
        iou, masks = self.sessions["decoder"].run(None, {
            "image_embeddings": image_embeddings.cpu().numpy(), "point_coords": coords, "point_labels": labels,
            "mask_input": mask_input, "has_mask_input": has_mask})
        return torch.from_numpy(masks), torch.from_numpy(iou), None

    @staticmethod
    def _prompt_points(point_coords, point_labels, boxes) -> tuple[np.ndarray, np.ndarray]:
        """SAM's ONNX convention: box corners are points labelled 2 / 3; without a box a padding point (-1)."""
        parts_coords, parts_labels = [], []
        if point_coords is not None:
            parts_coords.append(point_coords.cpu().numpy().astype(np.float32))
            parts_labels.append(point_labels.cpu().numpy().astype(np.float32))
        if boxes is not None:
            corners = boxes.cpu().numpy().astype(np.float32).reshape(-1, 2, 2)   # (P, 2 corners, xy)
            parts_coords.append(corners)
            parts_labels.append(np.tile(np.array([[2.0, 3.0]], np.float32), (len(corners), 1)))
        else:
            count = parts_coords[0].shape[0] if parts_coords else 0
            if count == 0:
                raise SlimlabError("decode needs point or box prompts")
            parts_coords.append(np.zeros((count, 1, 2), np.float32))
            parts_labels.append(-np.ones((count, 1), np.float32))
        return np.concatenate(parts_coords, axis=1), np.concatenate(parts_labels, axis=1)
