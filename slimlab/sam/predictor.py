"""``SamPredictor``: embed an image once, then answer point / box / mask prompts (batched) cheaply."""

from __future__ import annotations

import numpy as np
import torch

from slimlab.core.errors import SlimlabError
from slimlab.sam.model import Sam
from slimlab.sam.transforms import as_rgb_uint8, resize_image, scale_boxes, scale_coords


class SamPredictor:
    """SAM-compatible API: ``set_image(img)`` then ``predict(point_coords, point_labels, box, mask_input)``."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.features: torch.Tensor | None = None
        self.original_size = (0, 0)
        self.input_size = (0, 0)

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """(H, W, 3) RGB uint8 (gray, RGBA, 16-bit are converted) -> cached embedding (1, C, h, w)."""
        image = as_rgb_uint8(np.asarray(image))
        resized = resize_image(image, self.model.image_size).to(self.device)  # (1, 3, h, w)
        self.original_size = image.shape[:2]
        self.input_size = tuple(resized.shape[-2:])
        self.features = self.model.encode(self.model.preprocess(resized))

    def check_prompts(self, point_coords, point_labels, box) -> None:
        height, width = self.original_size
        if point_coords is not None:
            coords = np.asarray(point_coords, dtype=np.float64)
            if coords.size == 0:
                raise SlimlabError("point prompts: the list of points is empty")
            if coords.shape[-1] != 2:
                raise SlimlabError(f"point prompts: expected (..., 2) x, y coordinates, got {coords.shape}")
            if point_labels is None or np.asarray(point_labels).shape != coords.shape[:-1]:
                raise SlimlabError("point prompts: point_labels must have one label per point")
            outside = (coords[..., 0] < 0) | (coords[..., 0] > width - 1) | (coords[..., 1] < 0) | \
                      (coords[..., 1] > height - 1)
            if outside.any():
                bad = coords[outside][0]
                raise SlimlabError(f"point prompt ({bad[0]:g}, {bad[1]:g}) lies outside the {width}x{height} image")
        if box is not None:
            boxes = np.asarray(box, dtype=np.float64).reshape(-1, 4)
            if boxes.size == 0:
                raise SlimlabError("box prompts: the list of boxes is empty")
            bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | (boxes[:, :2] < 0).any(1) | \
                  (boxes[:, 2] > width - 1) | (boxes[:, 3] > height - 1)
            if bad.any():
                b = boxes[bad][0]
                raise SlimlabError(f"box prompt ({b[0]:g}, {b[1]:g}, {b[2]:g}, {b[3]:g}) is not an x0<=x1, y0<=y1 box "
                                   f"inside the {width}x{height} image")
        if point_coords is None and box is None:
            raise SlimlabError("no prompt given: pass points, a box, or use segment-everything mode")

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                multimask_output: bool = True, return_logits: bool = False):
        """Numpy prompts in original-image pixels. Unbatched: points (N, 2), labels (N,), box (4,), mask (1, 4h, 4w)
        -> masks (M, H, W), iou (M,), low-res logits (M, 4h, 4w). With a leading batch axis B on the prompts the
        outputs gain it too: (B, M, H, W)."""
        if self.features is None:
            raise SlimlabError("set_image() must be called before predict()")
        self.check_prompts(point_coords, point_labels, box)
        batched = (point_coords is not None and np.asarray(point_coords).ndim == 3) or \
                  (box is not None and np.asarray(box).ndim == 2)
        coords = labels = boxes = masks = None
        if point_coords is not None:
            coords = torch.as_tensor(scale_coords(np.asarray(point_coords), self.original_size,
                                                  self.model.image_size), device=self.device)
            labels = torch.as_tensor(np.asarray(point_labels), dtype=torch.float32, device=self.device)
            if coords.ndim == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            boxes = torch.as_tensor(scale_boxes(np.asarray(box, dtype=np.float32), self.original_size,
                                                self.model.image_size), device=self.device).reshape(-1, 4)
        if mask_input is not None:
            masks = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32, device=self.device)
            masks = masks[None] if masks.ndim == 3 else masks
        out_masks, iou, low_res = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        out = (out_masks.cpu().numpy(), iou.cpu().numpy(), low_res.cpu().numpy())
        return out if batched else tuple(o[0] for o in out)

    @torch.no_grad()
    def predict_torch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True, return_logits: bool = False,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts already in model-input coordinates, batched: (B, N, 2), (B, N), (B, 4), (B, 1, 4h, 4w)."""
        low_res, iou, _ = self.model.decode(self.features, point_coords, point_labels, boxes, mask_input,
                                            multimask_output)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)  # (B, M, H, W)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res
