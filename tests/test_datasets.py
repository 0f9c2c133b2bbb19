import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from workloads.datasets import DatasetError, load_dataset, read_idx


def test_fashion_mnist_shapes_and_split_sizes(fashion):
    assert fashion.input_shape == (1, 28, 28)
    assert (len(fashion.train), len(fashion.validation), len(fashion.test)) == (55_000, 5_000, 10_000)
    assert fashion.num_classes == 10
    assert fashion.train.images.dtype == torch.float32 and fashion.train.labels.dtype == torch.int64
    assert abs(float(fashion.train.images.mean())) < 0.02  # normalised with the training statistics
    assert abs(float(fashion.train.images.std()) - 1.0) < 0.02
    assert set(fashion.test.labels.tolist()) == set(range(10))


def _row_hashes(images: torch.Tensor) -> set[int]:
    return {hash(row.numpy().tobytes()) for row in images}


def test_validation_is_held_out_of_training(fashion):
    train = _row_hashes(fashion.train.images)
    validation = _row_hashes(fashion.validation.images)
    # Fashion-MNIST has a handful of duplicate images; the split itself must be disjoint.
    assert len(train & validation) < 10


def test_split_is_deterministic_and_seeded(fashion):
    again = load_dataset("fashion_mnist")
    assert torch.equal(again.validation.labels, fashion.validation.labels)
    assert torch.equal(again.validation.images[:50], fashion.validation.images[:50])
    other = load_dataset("fashion_mnist", seed=1)
    assert not torch.equal(other.validation.labels, fashion.validation.labels)
    assert torch.equal(other.test.labels, fashion.test.labels)  # the test split never moves


def test_digits_is_small_and_complete(digits):
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.validation) + len(digits.test) == 1797
    assert len(digits.validation) == 150


def test_missing_fashion_files_name_the_path_and_remedy(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path)) as error:
        load_dataset("fashion_mnist", root=tmp_path)
    assert "apt-get install dataset-fashion-mnist" in str(error.value)


def _write_idx(path: Path, array: np.ndarray, magic_type: int = 0x08) -> None:
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_round_trip_and_malformed_files(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = tmp_path / "good-idx3-ubyte.gz"
    _write_idx(good, array)
    assert np.array_equal(read_idx(good), array)

    bad_magic = tmp_path / "magic.gz"
    _write_idx(bad_magic, array, magic_type=0x0D)  # float data, not unsigned bytes
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(bad_magic)

    truncated = tmp_path / "truncated.gz"
    with gzip.open(good) as source, gzip.open(truncated, "wb") as target:
        target.write(source.read()[:-5])
    with pytest.raises(DatasetError, match="holds"):
        read_idx(truncated)


def test_fashion_reader_on_small_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 40), ("t10k", 12)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    splits = load_dataset("fashion_mnist", root=tmp_path, validation_size=8)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (32, 8, 12)


def _write_cifar(folder: Path, per_batch: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, per_batch))}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)


def test_cifar10_reader_on_a_small_pickle_set(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py", per_batch=6, rng=np.random.default_rng(1))
    splits = load_dataset("cifar10", root=tmp_path, validation_size=5)  # the parent folder works too
    assert splits.input_shape == (3, 32, 32)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (25, 5, 6)


def test_cifar10_missing_and_corrupt_batches(tmp_path):
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(DatasetError, match="needs a root"):
        load_dataset("cifar10")
    folder = tmp_path / "c"
    _write_cifar(folder, per_batch=3, rng=np.random.default_rng(2))
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", root=folder, validation_size=2)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DatasetError, match="fashion_mnist, digits, cifar10"):
        load_dataset("imagenet")
