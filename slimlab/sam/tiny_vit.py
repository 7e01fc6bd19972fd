"""TinyViT image encoder as used by MobileSAM / TinySAM (``vit_t``).

Names follow the official module tree (``patch_embed.seq``, ``layers.i.blocks.j``, ``Conv2d_BN`` as ``c``/``bn``,
an unused ImageNet head ``norm_head``/``head``) so ``tinysam.pth`` loads strictly. ``merge_strides`` makes the
stride of each patch merging explicit (the official code hard-codes stride 1 for the last one via its width).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from slimlab.sam.common import (
    make_neck,
    matmul_input,
    window_partition,
    window_unpartition,
)


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (official name ``Conv2d_BN``: children ``c`` and ``bn``)."""

    def __init__(self, a: int, b: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, kernel, stride, padding, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        if self.bn.weight.device.type != "meta":
            nn.init.constant_(self.bn.weight, bn_weight_init)


class PatchEmbed(nn.Module):
    """Two stride-2 ConvBN layers with GELU: (B, 3, S, S) -> (B, C, S/4, S/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, embed_dim // 2, 3, 2, 1), nn.GELU(),
                                 ConvBN(embed_dim // 2, embed_dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, channels: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(channels * expand_ratio)
        self.conv1 = ConvBN(channels, hidden, 1)
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = ConvBN(hidden, channels, 1, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) or (B, H*W, C) -> (B, H'*W', out_dim) with a depthwise conv of the given stride."""

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            height, width = self.resolution
            x = x.transpose(1, 2).reshape(x.shape[0], -1, height, width)
        x = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Multi-head attention with a learned bias per head and per |dy|, |dx| offset inside the window."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * self.key_dim * num_heads)
        self.proj = nn.Linear(self.key_dim * num_heads, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        indices = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                indices.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(indices).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, 3 * self.key_dim)
        q, k, v = qkv.split(self.key_dim, dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)  # (B, nH, N, d)
        q, k, v = matmul_input(self, "q", q), matmul_input(self, "k", k), matmul_input(self, "v", v)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (nH, N, N)
        attention = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
        attention = matmul_input(self, "probabilities", attention)
        return self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, -1))


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int,
                 mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H*W, C)
        height, width = self.resolution
        batch, tokens, channels = x.shape
        windows, padded = window_partition(x.view(batch, height, width, channels), self.window)
        attended = self.attn(windows.view(-1, self.window * self.window, channels))
        attended = window_unpartition(attended.view(-1, self.window, self.window, channels), self.window, padded,
                                      (height, width))
        x = x + attended.view(batch, tokens, channels)
        x = self.local_conv(x.transpose(1, 2).reshape(batch, channels, height, width))
        x = x.view(batch, channels, tokens).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """``layers.i``: blocks followed by an optional patch merging into the next width."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """(B, 3, S, S) -> (B, out_chans, S/16, S/16) with the default strides (2, 2, 1)."""

    def __init__(self, img_size: int = 1024, embed_dims: tuple[int, ...] = (64, 128, 160, 320),
                 depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (2, 4, 5, 10),
                 window_sizes: tuple[int, ...] = (7, 7, 14, 7), mlp_ratio: float = 4.0,
                 mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3, merge_strides: tuple[int, ...] = (2, 2, 1),
                 num_classes: int = 1000, out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(3, embed_dims[0])
        resolution = img_size // 4
        layers = []
        for index, (dim, depth) in enumerate(zip(embed_dims, depths)):
            last = index == len(embed_dims) - 1
            stride = 1 if last else merge_strides[index]
            size = (resolution, resolution)
            downsample = None if last else PatchMerging(size, dim, embed_dims[index + 1], stride)
            if index == 0:
                blocks = [MBConv(dim, mbconv_expand_ratio) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dim, size, num_heads[index], window_sizes[index], mlp_ratio, local_conv_size)
                          for _ in range(depth)]
            layers.append(Stage(blocks, downsample))
            resolution = (resolution + stride - 1) // stride
        self.layers = nn.ModuleList(layers)
        self.output_resolution = resolution
        # The official encoder keeps its ImageNet classifier; it is never used but sits in the checkpoints.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = make_neck(embed_dims[-1], out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[0](self.patch_embed(x))
        for layer in self.layers[1:]:
            x = layer(x)  # (B, H*W, C)
        side = self.output_resolution
        return self.neck(x.view(x.shape[0], side, side, -1).permute(0, 3, 1, 2))
