"""A small ResNet-style trunk written here (no torchvision), width configurable, and loading user weights by path.

Input (B, 3, H, W) -> feature map (B, 4 * width, H / 8, W / 8): a stride-2 stem, then three stages of basic
residual blocks with strides 1, 2, 2 (ResNet-18 layout truncated after stage 3, as the spec's CPU profile asks).

Receptive field: with ``wide`` (3x3 everywhere) each output spans 47 input rows, three quarters of a 64-pixel-high
pedestrian (63 after a 3x3 branch conv), so a "head" feature already sees the torso and legs. ``local`` makes stage 3
pointwise (1x1 convolutions, stride 2 by 2x2 average pooling): 27 rows, so a feature describes its own body region
and attributes of other regions can only come in through a head that exchanges context between branches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slimlab.core.errors import SlimlabError
from slimlab.core.torch_files import load_torch_file


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel_size: int = 3):
        super().__init__()
        # A pointwise block downsamples by average pooling first: a strided 1x1 convolution would drop 3 of 4 pixels.
        self.pool = nn.AvgPool2d(stride) if kernel_size == 1 and stride > 1 else nn.Identity()
        conv_stride = 1 if kernel_size == 1 else stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, conv_stride, kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, conv_stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


RECEPTIVE_FIELDS = ("wide", "local")


class ResNetTrunk(nn.Module):
    """Stem (stride 2) + stages of ``blocks_per_stage`` basic blocks at widths (w, 2w, 4w) and strides (1, 2, 2);
    ``receptive_field="local"`` makes the last stage pointwise (see the module note)."""

    def __init__(self, width: int = 16, blocks_per_stage: int = 1, receptive_field: str = "wide"):
        super().__init__()
        if width < 1 or blocks_per_stage < 1:
            raise SlimlabError(f"backbone: width ({width}) and blocks per stage ({blocks_per_stage}) must be >= 1")
        if receptive_field not in RECEPTIVE_FIELDS:
            raise SlimlabError(f"backbone: receptive field must be one of {', '.join(RECEPTIVE_FIELDS)}, "
                               f"got '{receptive_field}'")
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, channels = [], width
        for stage_index, stride in enumerate((1, 2, 2)):
            out_channels = width * 2 ** stage_index
            kernel = 1 if receptive_field == "local" and stage_index == 2 else 3
            blocks = [BasicBlock(channels, out_channels, stride, kernel)]
            blocks += [BasicBlock(out_channels, out_channels, 1, kernel) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images))  # (B, 4w, H/8, W/8)


def load_backbone_weights(trunk: nn.Module, path: str | Path) -> list[str]:
    """Load a trunk state dict from a torch file or a .safetensors file; returns the tensor names loaded.

    Keys may carry a ``trunk.`` prefix (a whole slimlab PAR checkpoint's ``model`` entry works too); heads are
    ignored. Every trunk tensor must be present with the same shape, else the error names the first mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise SlimlabError(f"{path}: backbone weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as error:  # safetensors raises its own types for a truncated or foreign file
            raise SlimlabError(f"{path}: cannot read backbone weights ({error})") from error
    else:
        state = load_torch_file(path, "backbone weights file")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise SlimlabError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    stripped = {key[len("trunk."):] if key.startswith("trunk.") else key: value for key, value in state.items()}
    expected = trunk.state_dict()
    for name, tensor in expected.items():
        if name not in stripped:
            raise SlimlabError(f"{path}: backbone tensor '{name}' is missing (the file has {len(stripped)} tensors; "
                               f"was it saved from a trunk of another width or depth?)")
        if tuple(stripped[name].shape) != tuple(tensor.shape):
            raise SlimlabError(f"{path}: tensor '{name}' has shape {tuple(stripped[name].shape)} but the backbone "
                               f"expects {tuple(tensor.shape)}")
    trunk.load_state_dict({name: stripped[name] for name in expected})
    return list(expected)
