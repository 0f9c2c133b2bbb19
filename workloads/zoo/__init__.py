"""The network zoo: small image classifiers whose Conv/Linear layers are mapping candidates.

Every builder takes ``in_channels``, ``num_classes`` and ``image_size`` so the same
architecture serves Fashion-MNIST (1x28x28), CIFAR-10 (3x32x32) and 8x8 digits.
Layers that aihwkit's torch tiles cannot run (grouped and depthwise convolutions) are
ordinary ``nn.Conv2d`` with ``groups > 1``; the layer table marks them digital-only.
"""

from workloads.zoo.cnn import lenet5, mlp, vgg11
from workloads.zoo.mobilenet import mobilenetv2
from workloads.zoo.resnet import resnet8, resnet20
from workloads.zoo.vit import vit

BUILDERS = {
    "mlp": mlp,
    "lenet5": lenet5,
    "vgg11": vgg11,
    "resnet8": resnet8,
    "resnet20": resnet20,
    "mobilenetv2": mobilenetv2,
    "vit": vit,
}

__all__ = ["BUILDERS", "lenet5", "mlp", "mobilenetv2", "resnet8", "resnet20", "vgg11", "vit"]
