"""Model builders outside ``workloads.zoo``, for the trusted-package checks of ``NetworkSpec.build``."""

from __future__ import annotations

from os.path import join  # noqa: F401  a function defined elsewhere, re-exported: must be refused

from torch import nn

TOY_FEATURES = 4
TOY_CLASSES = 2


class ToyNet(nn.Module):
    """A one-layer classifier: a model class as a target."""

    def __init__(self, in_features: int = TOY_FEATURES, num_classes: int = TOY_CLASSES) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.fc(x)


def toy_mlp(in_features: int = TOY_FEATURES, num_classes: int = TOY_CLASSES) -> nn.Module:
    """A builder function as a target."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


def not_a_model() -> str:
    """A trusted function that returns something other than an nn.Module."""
    return "not a model"
