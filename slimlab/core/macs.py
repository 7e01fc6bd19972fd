"""Count multiply-accumulates (MACs) and parameters of a model by running it once on a dummy input.

Only the layers that dominate image networks are counted: Conv2d, ConvTranspose2d and Linear (one MAC per
weight use; bias adds, norms and activations are ignored, as in the GAN-compression literature).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelCost:
    macs: int            # multiply-accumulates for one forward pass of the given input shape
    params: int          # trainable + frozen parameters
    size_mb_fp32: float  # parameter bytes in float32, in MB (1e6 bytes)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def layer_macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """MACs of one counted layer for one call (whole batch)."""
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        # every output element sums over (in_channels / groups) * kernel inputs
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.ConvTranspose2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        # every input element is scattered to (out_channels / groups) * kernel outputs
        return inputs.numel() * (module.out_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def count_cost(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """MACs for a batch-1 forward of ``input_shape`` (C, H, W) and the parameter count of ``model``."""
    total = [0]

    def hook(module, inputs, output):
        total[0] += layer_macs(module, inputs[0], output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(macs=total[0], params=params, size_mb_fp32=params * 4 / 1e6)
