"""Small networks that exist only for tests (built through ``model._target_`` with
``AIMC_TRUSTED_PACKAGES=tests``)."""

from torch import nn


def no_mappable_layers(num_classes: int = 10, image_size: int = 8) -> nn.Module:
    """No Conv2d and no Linear: nothing a mapping could decide."""
    return nn.Sequential(nn.Flatten(), nn.ReLU())


class RepeatChannels(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x):
        return x.repeat(1, self.channels, 1, 1)


def depthwise_only(num_classes: int = 10, image_size: int = 8) -> nn.Module:
    """Only a depthwise convolution: every mappable layer is digital-only (nothing to map)."""
    return nn.Sequential(RepeatChannels(num_classes),
                         nn.Conv2d(num_classes, num_classes, 3, padding=1, groups=num_classes),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
