"""The SAM container: image encoder + prompt encoder + mask decoder, with SAM's pre- and post-processing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimlab.sam.mask_decoder import MaskDecoder
from slimlab.sam.prompt_encoder import PromptEncoder

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """State-dict compatible with ``segment_anything.modeling.Sam`` (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``; ``pixel_mean``/``pixel_std`` are not saved)."""

    mask_threshold = 0.0

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
        self.spec: dict = {}  # set by the builder: how to rebuild this model (saved next to the weights)

    @property
    def image_size(self) -> int:
        return self.prompt_encoder.input_image_size[0]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) resized RGB in 0-255 -> normalised and zero-padded (right/bottom) to (B, 3, S, S)."""
        images = (images - self.pixel_mean) / self.pixel_std
        height, width = images.shape[-2:]
        return F.pad(images, (0, self.image_size - width, 0, self.image_size - height))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, S, S) -> image embeddings (B, C, S/16, S/16) (or S/8 for the small models)."""
        return self.image_encoder(images)

    def decode(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_inputs: torch.Tensor | None = None, multimask_output: bool = True,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts in model-input pixel coordinates -> (low-res logits (B, M, 4h, 4w), IoU (B, M), tokens (B, 5, C)).

        M = 3 (tokens 1-3) with ``multimask_output``, else 1 (token 0), as in SAM.
        """
        points = None if point_coords is None else (point_coords, point_labels)
        sparse, dense = self.prompt_encoder(points, boxes, mask_inputs)
        masks, iou, tokens = self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense)
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, selected], iou[:, selected], tokens

    def postprocess_masks(self, low_res: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits (B, M, 4h, 4w) -> upsample to S x S, drop the padding, resize to the original image."""
        masks = F.interpolate(low_res, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        masks = masks[..., :input_size[0], :input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
