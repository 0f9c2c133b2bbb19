"""Plain feed-forward networks: an MLP, LeNet-5 and a VGG-style CNN."""

from __future__ import annotations

from torch import nn


def mlp(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
        hidden: tuple[int, ...] = (256, 128)) -> nn.Module:
    """Multi-layer perceptron on the flattened image (len(hidden) + 1 Linear layers)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * image_size * image_size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling: 2 conv + 3 linear layers."""
    spatial = ((image_size // 2) - 4) // 2  # conv1 keeps size (padding 2), conv2 shrinks by 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * spatial * spatial, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


_VGG11_PLAN = (16, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256)


def vgg11(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Module:
    """VGG-style CNN: 8 conv (3x3, BatchNorm, ReLU) in four stages + 3 linear = 11 layers."""
    layers: list[nn.Module] = []
    channels, spatial = in_channels, image_size
    for item in _VGG11_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            spatial //= 2
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                       nn.BatchNorm2d(int(item)), nn.ReLU()]
            channels = int(item)
    layers += [
        nn.Flatten(),
        nn.Linear(channels * spatial * spatial, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    ]
    return nn.Sequential(*layers)
