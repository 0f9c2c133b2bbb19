"""Shared fixtures. Expensive objects (datasets, trained models) are built once per session."""

from __future__ import annotations

import pytest
import torch

from workloads.datasets import DataSplits, load_dataset


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fashion() -> DataSplits:
    return load_dataset("fashion_mnist")


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    return load_dataset("digits", validation_size=150)
