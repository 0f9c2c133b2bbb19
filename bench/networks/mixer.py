"""MLP-Mixer (Tolstikhin et al., NeurIPS 2021, arXiv:2105.01601) for Fashion-MNIST, built from
plain ``nn.Linear`` so every weight layer is a mapping candidate.

A bring-your-own network (not in the zoo): its description is ``bench/networks/mixer.yaml``,
loaded with ``AIMC_TRUSTED_PACKAGES=bench.networks``.

The image is cut into non-overlapping ``patch`` x ``patch`` patches (7x7 on 28x28: 16 tokens),
each projected to ``dim`` channels by one per-patch ``nn.Linear`` (the paper's "per-patch
fully-connected" stem). Each of ``depth`` Mixer blocks is

    x = x + token_mlp(norm1(x)^T)^T     # Linear over the token dimension, shared across channels
    x = x + channel_mlp(norm2(x))       # Linear over channels, shared across tokens

with two-layer GELU MLPs (hidden widths ``token_dim`` and ``channel_dim``), then a LayerNorm,
global average pooling over tokens and a linear head. No attention, no convolution: all
mappable layers are ``nn.Linear`` (layer-table kind "linear", the head "classifier"); a
token-mixing layer runs ``dim`` vectors of length ``tokens`` per image, a channel-mixing layer
``tokens`` vectors of length ``dim``.
"""

from __future__ import annotations

import torch
from torch import nn

from workloads.zoo.vit import image_patches


class MlpBlock(nn.Module):
    """Linear -> GELU -> Linear on the last dimension."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    """Pre-norm token mixing then channel mixing, each with a residual connection."""

    def __init__(self, tokens: int, dim: int, token_dim: int, channel_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = MlpBlock(tokens, token_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = MlpBlock(dim, channel_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: B, tokens, dim
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        return {"elementwise": 2 * output[0].numel()}  # two residual additions


class MlpMixer(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image_size: int, patch: int, dim: int,
                 depth: int, token_dim: int, channel_dim: int) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} must be divisible by patch={patch}")
        self.patch = patch
        self.tokens = (image_size // patch) ** 2
        self.embed = nn.Linear(in_channels * patch * patch, dim)
        self.blocks = nn.Sequential(*(MixerBlock(self.tokens, dim, token_dim, channel_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.blocks(self.embed(image_patches(x, self.patch))))
        return self.head(tokens.mean(dim=1))  # global average pooling over tokens

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        return {"elementwise": self.tokens * self.head.in_features}  # the average pooling's additions


def mixer(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, patch: int = 7, dim: int = 64,
          depth: int = 4, token_dim: int = 32, channel_dim: int = 128) -> nn.Module:
    """MLP-Mixer with ``depth`` blocks of width ``dim`` on (image_size / patch)^2 tokens:
    1 + 4 x depth + 1 Linear layers (embedding, 2 token-mixing + 2 channel-mixing per block, head)."""
    return MlpMixer(in_channels, num_classes, image_size, patch, dim, depth, token_dim, channel_dim)
