"""The network zoo: small image classifiers and a character-level language model whose
Conv/Linear layers are mapping candidates.

Every image classifier's builder takes ``in_channels``, ``num_classes`` and ``image_size`` so the
same architecture serves Fashion-MNIST (1x28x28), CIFAR-10 (3x32x32) and 8x8 digits; ``gpt``
takes its vocabulary, context and sizes (``vocab_size``, ``context``, ``width``, ``blocks``,
``heads``, ``mlp_dim``).
Layers that aihwkit's torch tiles cannot run (grouped and depthwise convolutions) are
ordinary ``nn.Conv2d`` with ``groups > 1``; the layer table marks them digital-only.
"""

from workloads.zoo.cnn import lenet5, mlp, vgg11
from workloads.zoo.gpt import gpt
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
    "gpt": gpt,
}
IMAGE_CLASSIFIERS = tuple(name for name in BUILDERS if name != "gpt")  # builders taking in_channels, num_classes, image_size

__all__ = ["BUILDERS", "IMAGE_CLASSIFIERS", "gpt", "lenet5", "mlp", "mobilenetv2", "resnet8", "resnet20", "vgg11", "vit"]
