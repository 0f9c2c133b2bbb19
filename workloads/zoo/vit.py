"""A small Vision Transformer (Dosovitskiy et al., 2021) built from plain ``nn.Linear``.

aihwkit converts ``nn.Linear`` but not ``nn.MultiheadAttention``, so attention is written out:
separate query/key/value/output projections (mappable, kind "attention projection") and the
score and value matmuls (no mapping choice: they multiply two activations, not weights).
The attention and the pre-norm block also serve the decoder-only ``workloads.zoo.gpt`` with a
causal mask.
"""

from __future__ import annotations

import torch
from torch import nn


def image_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Non-overlapping ``patch`` x ``patch`` patches of images (B, C, H, W), flattened per patch in
    row-major patch order: (B, H/patch * W/patch, C * patch * patch)."""
    batch, channels, _, _ = x.shape
    patches = x.unfold(2, patch, patch).unfold(3, patch, patch)  # B, C, H/p, W/p, p, p
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(batch, -1, channels * patch * patch)


class SelfAttention(nn.Module):
    """Multi-head self-attention with its four projections as separate ``nn.Linear``; with
    ``causal=True`` a token attends only to itself and the tokens before it."""

    def __init__(self, dim: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads, self.causal = heads, causal
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        for projection in (self.query, self.key, self.value, self.out):
            projection.mapping_kind = "attention"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        head_dim = dim // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, self.heads, head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        if self.causal:
            future = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).triu_(1)
            scores = scores.masked_fill(future, float("-inf"))
        context = scores.softmax(dim=-1) @ v
        return self.out(context.transpose(1, 2).reshape(batch, tokens, dim))

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        """Q.K^T and softmax(S).V per sample: 2 * pairs * dim MACs and a softmax over the scores,
        with pairs = tokens^2, or tokens (tokens + 1) / 2 under a causal mask (a digital core
        computes only the scores it keeps)."""
        tokens, dim = output.shape[1], output.shape[2]
        pairs = tokens * (tokens + 1) // 2 if self.causal else tokens * tokens
        return {"macs": 2 * pairs * dim, "elementwise": self.heads * pairs}


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x)) (GELU MLP)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, causal: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, causal)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        return {"elementwise": 2 * output[0].numel()}  # two residual additions


class VisionTransformer(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, patch: int,
                 dim: int, depth: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} must be divisible by patch={patch}")
        self.patch = patch
        tokens = (image_size // patch) ** 2
        self.embed = nn.Linear(in_channels * patch * patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), self.embed(image_patches(x, self.patch))], dim=1)
        tokens = self.blocks(tokens + self.position)
        return self.head(self.norm(tokens[:, 0]))


def vit(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, patch: int = 7,
        dim: int = 64, depth: int = 4, heads: int = 4, mlp_dim: int = 128) -> nn.Module:
    """ViT with 4 encoder blocks of width 64: 1 + 6 x depth + 1 Linear layers."""
    return VisionTransformer(in_channels, num_classes, image_size, patch, dim, depth, heads, mlp_dim)
