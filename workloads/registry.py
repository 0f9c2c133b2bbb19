"""Networks as data: a network is a model builder (a hydra ``_target_``), a checkpoint and a dataset.

The zoo's networks are described in ``conf/network/<name>.yaml``; a user's own network is the
same kind of description pointing at their own import path, checkpoint and data. A network whose
input is not an image gives the shape of one sample as ``input_shape`` (``[64]``: 64 token ids).

A description is untrusted input: its ``_target_`` is imported and called, so ``build`` only
accepts targets in ``workloads.zoo`` or in a package the user lists in ``AIMC_TRUSTED_PACKAGES``
(comma-separated package or module prefixes). The prefix is checked before anything is imported,
the attribute must be a ``torch.nn.Module`` subclass or a function defined in a trusted package,
and what it returns must be an ``nn.Module``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.paths import PROJECT_ROOT
from common.presets import load_preset, preset_names
from workloads.datasets import DataSplits, load_dataset


TRUSTED_PACKAGES_ENV = "AIMC_TRUSTED_PACKAGES"
BUILTIN_TRUSTED = ("workloads.zoo",)  # the project's own builders
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class NetworkError(RuntimeError):
    """A network description, builder or checkpoint is unusable; the message says how to fix it."""


def listed_packages() -> list[str]:
    """The prefixes in ``AIMC_TRUSTED_PACKAGES``, read at each call so a changed setting applies."""
    listed = [entry.strip() for entry in os.environ.get(TRUSTED_PACKAGES_ENV, "").split(",") if entry.strip()]
    for entry in listed:
        if not _DOTTED_NAME.fullmatch(entry):
            raise NetworkError(f"{TRUSTED_PACKAGES_ENV} entry {entry!r} is not a package or module name "
                               "(expected comma-separated names such as mypackage,lab.models)")
    return listed


def trusted_prefixes() -> tuple[str, ...]:
    """``workloads.zoo`` plus the prefixes the user listed in ``AIMC_TRUSTED_PACKAGES``."""
    return BUILTIN_TRUSTED + tuple(listed_packages())


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether dotted ``name`` is one of ``prefixes`` or inside one (``a.b`` is under ``a``, ``ab`` is not)."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild a trained network and its data."""

    name: str
    model: dict[str, Any]
    checkpoint: str
    dataset: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)  # accuracy-artifact plan overrides (accuracy.profiles)
    # One sample's shape, which the layer table traces: ``input_shape`` of the description (a
    # sequence model's ``[tokens]``), or, when it gives none, (C, H, W) from the model's
    # ``in_channels`` and ``image_size``, defaulting to Fashion-MNIST's 1x28x28. A field, not a
    # property, so ``dataclasses.asdict`` -> ``from_config`` (how processes receive a spec) keeps it.
    input_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        shape = self.input_shape
        if shape is None or (isinstance(shape, (list, tuple)) and len(shape) == 0):
            size, channels = self.model.get("image_size", 28), self.model.get("in_channels", 1)
            shape = (channels, size, size)
        if (not isinstance(shape, (list, tuple))
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
            raise NetworkError(f"network {self.name!r}: input_shape must be a list of positive integers "
                               f"(one sample's shape, e.g. [64] for 64 tokens), got {shape!r}")
        object.__setattr__(self, "input_shape", tuple(shape))  # frozen: set once, here

    @classmethod
    def from_config(cls, config: Any) -> "NetworkSpec":
        """Build from a mapping (plain dict or OmegaConf node) with name, model, checkpoint, dataset."""
        if hasattr(config, "_metadata"):  # an OmegaConf node: resolve to plain containers
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(config, resolve=True)
        missing = [key for key in ("name", "model", "checkpoint") if not config.get(key)]
        if missing:
            raise NetworkError(f"network description lacks {', '.join(missing)} "
                               "(see conf/network/resnet20.yaml for the expected fields)")
        if "_target_" not in config["model"]:
            raise NetworkError(f"network {config['name']!r}: model needs a _target_ import path "
                               "such as workloads.zoo.resnet20 or mypackage.models.MyNet")
        return cls(name=str(config["name"]), model=dict(config["model"]),
                   checkpoint=str(config["checkpoint"]), dataset=dict(config.get("dataset") or {}),
                   profile=dict(config.get("profile") or {}), input_shape=config.get("input_shape", ()))

    @classmethod
    def zoo(cls, name: str) -> "NetworkSpec":
        """The description of a zoo network by name (``conf/network/<name>.yaml``)."""
        if name not in zoo_names():
            raise NetworkError(f"unknown network {name!r}; zoo networks: {', '.join(zoo_names())}")
        return cls.from_config(load_preset("network", name))

    @property
    def checkpoint_path(self) -> Path:
        path = Path(self.checkpoint)
        return path if path.is_absolute() else PROJECT_ROOT / path

    def build(self) -> nn.Module:
        """An untrained instance of the model (``_target_`` called with the other keys).

        The target is checked against the trusted packages before it is imported, because
        importing a module already runs its code.
        """
        target = self.model["_target_"]
        builder = self._trusted_builder(target)
        kwargs = {k: v for k, v in self.model.items() if k != "_target_"}
        try:
            model = builder(**kwargs)
        except TypeError as error:
            raise NetworkError(f"network {self.name!r}: {target}(**{kwargs}) failed: {error}") from error
        if not isinstance(model, nn.Module):
            raise NetworkError(f"network {self.name!r}: model._target_ {target!r} returned a "
                               f"{type(model).__name__}, not a torch.nn.Module")
        return model

    def _trusted_builder(self, target: Any) -> Any:
        """The class or function ``target`` names, refusing anything outside the trusted packages."""
        if not isinstance(target, str) or not _DOTTED_NAME.fullmatch(target) or "." not in target:
            raise NetworkError(f"network {self.name!r}: model._target_ {target!r} is not an import path "
                               "such as workloads.zoo.resnet20 or mypackage.models.MyNet")
        module_name, _, attribute = target.rpartition(".")
        trusted = trusted_prefixes()
        if not _is_under(module_name, trusted):
            suggestion = ",".join([*listed_packages(), module_name.split(".")[0]])
            raise NetworkError(
                f"network {self.name!r}: model._target_ {target!r} is not in a trusted package; builders are "
                f"allowed from {', '.join(BUILTIN_TRUSTED)} and the packages listed in {TRUSTED_PACKAGES_ENV} "
                f"(set {TRUSTED_PACKAGES_ENV}={suggestion} to allow it, only if you trust it)")
        try:
            builder = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise NetworkError(f"network {self.name!r}: cannot import {target!r} ({error}); "
                               "check the model._target_ import path and PYTHONPATH") from error
        is_model_class = inspect.isclass(builder) and issubclass(builder, nn.Module)
        is_own_function = inspect.isfunction(builder) and _is_under(builder.__module__ or "", trusted)
        if not (is_model_class or is_own_function):
            raise NetworkError(f"network {self.name!r}: model._target_ {target!r} (type {type(builder).__name__}, "
                               f"from module {getattr(builder, '__module__', None)!r}) is neither a "
                               "torch.nn.Module subclass nor a function defined in a trusted package; point "
                               "it at a model class or a builder function")
        return builder

    def load(self) -> nn.Module:
        """The trained model in eval mode, weights from the checkpoint (``weights_only=True``)."""
        model = self.build()
        path = self.checkpoint_path
        if not path.is_file():
            raise NetworkError(f"network {self.name!r}: checkpoint {path} does not exist; train it with "
                               f"`python -m cli.train_zoo --networks {self.name}` or fix 'checkpoint'")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:  # torch raises many types for corrupt or mismatched files
            raise NetworkError(f"network {self.name!r}: checkpoint {path} cannot be loaded into "
                               f"{self.model['_target_']}: {str(error).splitlines()[0]}") from error
        return model.eval()

    def checkpoint_sha256(self) -> str:
        return file_sha256(self.checkpoint_path)

    def data(self) -> DataSplits:
        """The dataset's splits; a sequence dataset's windows are as long as the network's input
        (the last entry of ``input_shape``) unless the dataset gives its own ``context``."""
        cfg = self.dataset
        return load_dataset(cfg.get("name", "fashion_mnist"), root=cfg.get("root"),
                            validation_size=int(cfg.get("validation_size", 5000)),
                            seed=int(cfg.get("split_seed", 0)),
                            context=int(cfg.get("context", self.input_shape[-1])))


def zoo_names() -> list[str]:
    return preset_names("network")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
