"""CIFAR-style residual networks (He et al., 2016): ResNet-8 and ResNet-20.

Three stages of 16/32/64 channels with ``n`` basic blocks each (depth = 6n + 2).
Down-sampling shortcuts are 1x1 convolutions (option B), which are mappable layers too.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm with an identity or 1x1-conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))

    def unmappable_ops(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> dict[str, int]:
        """The residual addition, which runs on the cores whatever the mapping."""
        return {"elementwise": output[0].numel()}


class ResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        channels = 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(BasicBlock(channels, width, stride))
                channels = width
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet8(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """ResNet-8: one basic block per stage (7 conv + 2 shortcut conv + 1 linear)."""
    del image_size  # global average pooling makes the network size-agnostic
    return ResNet(1, in_channels, num_classes)


def resnet20(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """ResNet-20: three basic blocks per stage (19 conv + 2 shortcut conv + 1 linear)."""
    del image_size
    return ResNet(3, in_channels, num_classes)
