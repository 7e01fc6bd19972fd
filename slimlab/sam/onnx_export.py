"""ONNX export: the image encoder, and the prompt encoder + mask decoder with SAM's ONNX prompt inputs.

Decoder inputs (as in segment-anything's ``SamOnnxModel``): ``image_embeddings`` (1, C, h, w), ``point_coords``
(P, N, 2) in model-input pixels, ``point_labels`` (P, N) with 1 / 0 for positive / negative points, 2 / 3 for box
corners and -1 for padding, ``mask_input`` (P, 1, 4h, 4w), ``has_mask_input`` (1,). Outputs ``iou_predictions``
(P, M) and ``low_res_masks`` (P, M, 4h, 4w); upsampling to the image is left to the caller (``postprocess_masks``).
Unlike ``SamOnnxModel`` there is no ``orig_im_size`` input and no full-size ``masks`` output.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.io import atomic_write_bytes
from slimlab.sam.model import Sam


class PromptDecoderForExport(nn.Module):
    def __init__(self, model: Sam, multimask_output: bool = True) -> None:
        super().__init__()
        self.model, self.multimask_output = model, multimask_output

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        encoder = self.model.prompt_encoder
        embedding = encoder.pe_layer.forward_with_coords(coords + 0.5, encoder.input_image_size)  # (P, N, C)
        labels = labels[..., None]
        embedding = embedding * (labels != -1) + encoder.not_a_point_embed.weight * (labels == -1)
        for index, point_embedding in enumerate(encoder.point_embeddings):
            embedding = embedding + point_embedding.weight * (labels == index)
        return embedding

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        encoder = self.model.prompt_encoder
        sparse = self.embed_points(point_coords, point_labels)
        dense = has_mask_input * encoder.mask_downscaling(mask_input) + \
            (1 - has_mask_input) * encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        masks, iou, _ = self.model.mask_decoder(image_embeddings, encoder.get_dense_pe(), sparse, dense)
        selected = slice(1, None) if self.multimask_output else slice(0, 1)
        return iou[:, selected], masks[:, selected]


def to_onnx_bytes(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict) -> bytes:
    buffer = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
    return buffer.getvalue()


def decoder_example(model: Sam, prompts: int = 2, points: int = 3) -> tuple[torch.Tensor, ...]:
    channels = model.prompt_encoder.embed_dim
    height, width = model.prompt_encoder.image_embedding_size
    generator = torch.Generator().manual_seed(0)
    coords = torch.rand(prompts, points, 2, generator=generator) * model.image_size
    labels = torch.tensor([[1.0, 0.0, -1.0]])[:, :points].repeat(prompts, 1)
    return (torch.randn(1, channels, height, width, generator=generator), coords, labels,
            torch.randn(prompts, 1, 4 * height, 4 * width, generator=generator), torch.tensor([1.0]))


@torch.no_grad()
def export_onnx(model: Sam, out_dir: str | Path, multimask_output: bool = True) -> dict[str, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` atomically; returns their paths."""
    model = model.eval()
    out_dir = Path(out_dir)
    size = model.image_size
    encoder_bytes = to_onnx_bytes(model.image_encoder, (torch.zeros(1, 3, size, size),), ["image"],
                                  ["image_embeddings"], {})
    decoder = PromptDecoderForExport(model, multimask_output).eval()  # export restores the mode it finds
    decoder_bytes = to_onnx_bytes(
        decoder, decoder_example(model), ["image_embeddings", "point_coords", "point_labels", "mask_input",
                                          "has_mask_input"], ["iou_predictions", "low_res_masks"],
        {"point_coords": {0: "prompts", 1: "points"}, "point_labels": {0: "prompts", 1: "points"},
         "mask_input": {0: "prompts"}, "iou_predictions": {0: "prompts"}, "low_res_masks": {0: "prompts"}})
    paths = {"encoder": out_dir / "encoder.onnx", "decoder": out_dir / "decoder.onnx"}
    atomic_write_bytes(paths["encoder"], encoder_bytes)
    atomic_write_bytes(paths["decoder"], decoder_bytes)
    return paths


@torch.no_grad()
def check_parity(model: Sam, paths: dict[str, Path], multimask_output: bool = True) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| on the encoder and on a decoder call with new prompt counts."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    errors = {}
    size = model.image_size
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(paths["encoder"]), options, providers=["CPUExecutionProvider"])
    onnx_embeddings = session.run(None, {"image": image.numpy()})[0]
    torch_embeddings = model.image_encoder(image)
    errors["encoder"] = float(np.abs(onnx_embeddings - torch_embeddings.numpy()).max())
    inputs = decoder_example(model, prompts=3, points=2)
    inputs = (torch_embeddings,) + inputs[1:]
    session = onnxruntime.InferenceSession(str(paths["decoder"]), options, providers=["CPUExecutionProvider"])
    names = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
    onnx_iou, onnx_masks = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    torch_iou, torch_masks = PromptDecoderForExport(model, multimask_output).eval()(*inputs)
    errors["decoder_iou"] = float(np.abs(onnx_iou - torch_iou.numpy()).max())
    errors["decoder_masks"] = float(np.abs(onnx_masks - torch_masks.numpy()).max())
    if not all(np.isfinite(list(errors.values()))):
        raise SlimlabError(f"ONNX outputs are not finite: {errors}")
    return errors
