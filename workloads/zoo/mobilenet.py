"""A MobileNetV2-style network (Sandler et al., 2018) sized for 28x28 / 32x32 inputs.

Inverted residual blocks: 1x1 expansion, 3x3 depthwise, 1x1 linear projection. The depthwise
convolutions are digital-only (aihwkit's torch tiles reject grouped convolutions), which is
why such networks gain little from analog tiles (LionHeart: about +24% fully analog).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
             groups: int = 1, activation: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation:
        layers.append(nn.ReLU6())
    return layers


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn(in_channels, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, out_channels, 1, activation=False)
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        return {"elementwise": output[0].numel() if self.use_residual else 0}


# (expansion, out_channels, repeats, first stride)
_PLAN = ((1, 16, 1, 1), (4, 24, 2, 1), (4, 32, 2, 2), (4, 64, 2, 2))


def mobilenetv2(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """MobileNetV2-style: stride-2 stem, 7 inverted residual blocks (7 depthwise conv), 1x1 head, linear."""
    del image_size
    layers: list[nn.Module] = _conv_bn(in_channels, 32, 3, stride=2)
    channels = 32
    for expansion, width, repeats, stride in _PLAN:
        for i in range(repeats):
            layers.append(InvertedResidual(channels, width, stride if i == 0 else 1, expansion))
            channels = width
    layers += _conv_bn(channels, 256, 1)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(256, num_classes)]
    return nn.Sequential(*layers)
