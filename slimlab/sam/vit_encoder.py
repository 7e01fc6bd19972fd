"""SAM's ViT image encoder (ViTDet-style: windowed + a few global blocks, decomposed relative positions).

Parameter names follow ``segment_anything.modeling.image_encoder`` so ``sam_vit_b_01ec64.pth`` loads as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimlab.sam.common import (
    MLPBlock,
    make_neck,
    matmul_input,
    window_partition,
    window_unpartition,
)


def relative_positions(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis: (q_size, k_size, head_dim)."""
    max_distance = 2 * max(q_size, k_size) - 1
    if table.shape[0] != max_distance:  # a checkpoint trained at another size: interpolate the table
        table = F.interpolate(table.reshape(1, table.shape[0], -1).permute(0, 2, 1), size=max_distance,
                              mode="linear").reshape(-1, max_distance).permute(1, 0)
    q_coords = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[offsets.long()]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.num_heads, height * width, -1).unbind(0)  # (B*nH, N, d)
        q, k, v = matmul_input(self, "q", q), matmul_input(self, "k", k), matmul_input(self, "v", v)
        attention = (q * self.scale) @ k.transpose(-2, -1)  # (B*nH, N, N)
        rh = relative_positions(height, height, self.rel_pos_h)  # (H, H, d)
        rw = relative_positions(width, width, self.rel_pos_w)  # (W, W, d)
        r_q = q.reshape(-1, height, width, q.shape[-1])
        bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
        bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
        attention = (attention.view(-1, height, width, height, width)
                     + bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).view(-1, height * width, height * width)
        out = (matmul_input(self, "probabilities", attention.softmax(dim=-1)) @ v).view(batch, self.num_heads, height, width, -1)
        return self.proj(out.permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int,
                 input_size: tuple[int, int]) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, input_size if window_size == 0 else (window_size, window_size))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            size = (x.shape[1], x.shape[2])
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H/p, W/p, C)


class ImageEncoderViT(nn.Module):
    """(B, 3, S, S) normalized image -> (B, out_chans, S/p, S/p) embedding."""

    def __init__(self, img_size: int = 1024, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, out_chans: int = 256, window_size: int = 14,
                 global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, 0 if i in global_attn_indexes else window_size, (grid, grid))
            for i in range(depth))
        self.neck = make_neck(embed_dim, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed  # (B, g, g, C)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
