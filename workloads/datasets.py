"""Datasets read from their native files, with deterministic splits.

Four sources, none downloaded at run time:

* ``fashion_mnist``: the IDX files (gzipped or plain) that Debian's ``dataset-fashion-mnist``
  installs in ``/usr/share/datasets/fashion-mnist`` (60,000 train + 10,000 test, 1x28x28).
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images), for fast tests.
* ``cifar10``: the standard python-pickle batches (``data_batch_1..5``, ``test_batch``) in a
  folder the user provides. They are untrusted input: a restricted unpickler rebuilds only
  numpy arrays, lists, dicts, numbers and bytes, and refuses every other global, so a crafted
  batch cannot run code.
* ``fortunes``: character-level language modelling on the fortune cookies of Debian's
  ``fortunes`` package (with ``fortunes-min``, its dependency: the ``%``-separated text files in
  ``/usr/share/games/fortunes``; 15,134 distinct fortunes, 2.5 million characters; BSD licence).
  One fortune is one document. The test documents are a fixed 10% (a permutation with a
  constant seed, independent of the validation seed); the others, in an order permuted with
  ``seed``, go to validation until it has ``validation_size`` windows, the rest to training, so
  no fortune is in two splits. The vocabulary is fixed by the non-test documents: id 0 stands for
  every character seen fewer than ``MIN_CHAR_COUNT`` times there, ids 1.. for the others in code
  point order (98 ids for the Debian corpus). Each split's documents, each followed by the
  ``\n%\n`` separator of the fortune files, are one character stream cut into windows of
  ``context`` characters (stride ``context``): the inputs are ``chars[i:i+T]``, the labels
  ``chars[i+1:i+T+1]``, so ``images`` and ``labels`` are both int64 token ids of shape (N, T).

Splits: ``validation`` is held out of the training data by a seeded permutation and is what
mapping searches use; ``test`` is only for final reports.
"""

from __future__ import annotations

import _codecs
import gzip
import importlib
import importlib.util
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FORTUNES_ROOT = Path("/usr/share/games/fortunes")
DATASETS = ("fashion_mnist", "digits", "cifar10", "fortunes")

# Per-channel statistics of the training images, used for normalisation.
_STATS = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "digits": ((0.3051,), (0.3778,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
_HOW_TO_GET = {
    "fashion_mnist": "install it with `apt-get install dataset-fashion-mnist` (Debian) or put the four "
                     "IDX files (train-images-idx3-ubyte[.gz], ...) in a folder and pass it as the root",
    "cifar10": "download 'CIFAR-10 python version' (cifar-10-python.tar.gz), extract it and pass the "
               "folder holding data_batch_1..5 and test_batch (or its parent) as the root",
    "fortunes": "install it with `apt-get install fortunes` (Debian; it brings fortunes-min) or pass a folder "
                "of fortune files (plain text, one fortune per block, blocks separated by lines holding '%') "
                "as the root",
}


class DatasetError(RuntimeError):
    """A dataset file is missing or malformed; the message names the path and the remedy."""


@dataclass(frozen=True)
class ImageSet:
    """Normalised images (N, C, H, W) float32 and labels (N,) int64; for a sequence dataset,
    token ids (N, T) int64 and the next tokens (N, T) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, count: int | None) -> "ImageSet":
        """The first ``count`` samples (all of them when ``count`` is None or too large)."""
        if count is None or count >= len(self):
            return self
        return ImageSet(self.images[:count], self.labels[:count])


@dataclass(frozen=True)
class DataSplits:
    name: str
    train: ImageSet
    validation: ImageSet
    test: ImageSet
    num_classes: int
    vocabulary: str = ""  # sequence datasets: the character of each token id ("\ufffd" for unknown)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])


def load_dataset(name: str, root: str | Path | None = None, validation_size: int = 5000,
                 seed: int = 0, context: int = 64) -> DataSplits:
    """Load ``name`` and split it deterministically (same ``seed`` -> same split).

    ``validation_size`` counts images, or windows of ``context`` characters for ``fortunes``
    (``context`` is ignored by the image datasets).
    """
    if name == "fortunes":
        return _fortunes(Path(root) if root else FORTUNES_ROOT, validation_size, seed, context)
    if name == "fashion_mnist":
        base = Path(root) if root else FASHION_MNIST_ROOT
        train_x, train_y = _read_idx_pair(base, "train", name)
        test_x, test_y = _read_idx_pair(base, "t10k", name)
    elif name == "digits":
        train_x, train_y, test_x, test_y = _digits()
    elif name == "cifar10":
        if root is None:
            raise DatasetError(f"cifar10 needs a root folder: {_HOW_TO_GET['cifar10']}")
        train_x, train_y, test_x, test_y = _read_cifar10(Path(root))
    else:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not 0 < validation_size < len(train_y):
        raise DatasetError(f"validation_size={validation_size} must be between 1 and {len(train_y) - 1}")
    order = np.random.default_rng(seed).permutation(len(train_y))
    train_idx, val_idx = order[:-validation_size], order[-validation_size:]
    to_set = _normaliser(name)
    return DataSplits(
        name=name,
        train=to_set(train_x[train_idx], train_y[train_idx]),
        validation=to_set(train_x[val_idx], train_y[val_idx]),
        test=to_set(test_x, test_y),
        num_classes=int(max(train_y.max(), test_y.max())) + 1,
    )


def _normaliser(name: str):
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in _STATS[name])

    def to_set(images: np.ndarray, labels: np.ndarray) -> ImageSet:
        pixels = torch.from_numpy(np.array(images, dtype=np.float32)) / 255.0
        return ImageSet(((pixels - mean) / std).contiguous(), torch.from_numpy(labels.astype(np.int64)))

    return to_set


# --- IDX (MNIST-family) -------------------------------------------------------------------

def _find(base: Path, stem: str, dataset: str) -> Path:
    for candidate in (base / f"{stem}.gz", base / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{dataset}: missing {base / stem}[.gz]; {_HOW_TO_GET[dataset]}")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (unsigned-byte data, any rank), gzipped or plain."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    rank = raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    expected = int(np.prod(shape)) if rank else 0
    if len(raw) - header != expected:
        raise DatasetError(f"{path}: header says {shape} ({expected} bytes) but holds {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_idx_pair(base: Path, prefix: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find(base, f"{prefix}-images-idx3-ubyte", dataset)
    labels_path = _find(base, f"{prefix}-labels-idx1-ubyte", dataset)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not match")
    return images[:, None, :, :], labels


# --- scikit-learn digits ------------------------------------------------------------------

def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    # Digits ships without a test split: hold out a fixed 20% (independent of the validation seed).
    order = np.random.default_rng(12345).permutation(len(labels))
    test_count = len(labels) // 5
    test, train = order[:test_count], order[test_count:]
    return images[train], labels[train], images[test], labels[test]


# --- CIFAR-10 python pickles -----------------------------------------------------------------

def _cifar_folder(root: Path) -> Path:
    for folder in (root, root / "cifar-10-batches-py"):
        if (folder / "data_batch_1").is_file():
            return folder
    raise DatasetError(f"cifar10: no data_batch_1 in {root} or {root / 'cifar-10-batches-py'}; "
                       f"{_HOW_TO_GET['cifar10']}")


# Globals a genuine CIFAR-10 python batch (or one re-pickled by numpy 1.x/2.x, protocols 2-5) refers
# to: (pickled module, name) -> (module in this numpy, name). numpy 2 moved ``numpy.core`` to
# ``numpy._core``; both spellings are accepted and resolved to this numpy's objects.
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"
_CIFAR_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    **{(f"{core}.multiarray", "_reconstruct"): (f"{_NUMPY_CORE}.multiarray", "_reconstruct")
       for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): (f"{_NUMPY_CORE}.multiarray", "scalar")  # numpy integer labels
       for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): (f"{_NUMPY_CORE}.numeric", "_frombuffer")  # protocol 5
       for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}
_BYTES_CODEC = "latin1"  # protocol 2 written by Python 3 stores bytes as _codecs.encode(text, "latin1")


def _latin1_encode(text: str, encoding: str = _BYTES_CODEC) -> bytes:
    """``_codecs.encode`` restricted to the one codec pickle uses for bytes."""
    if encoding not in (_BYTES_CODEC, "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} (only {_BYTES_CODEC} is allowed)")
    return _codecs.encode(text, _BYTES_CODEC)


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays need, so a batch cannot run code."""

    def __init__(self, handle: Any, path: Path) -> None:
        super().__init__(handle, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) not in _CIFAR_GLOBALS:
            raise DatasetError(f"{self.path}: the CIFAR-10 reader refuses to load {module}.{name}: CIFAR-10 "
                               "batches hold only arrays, lists, dicts and bytes")
        real_module, real_name = _CIFAR_GLOBALS[(module, name)]
        return getattr(importlib.import_module(real_module), real_name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"cifar10: missing {path}; {_HOW_TO_GET['cifar10']}")
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, path).load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, AttributeError, TypeError,
            ValueError) as error:
        raise DatasetError(f"{path} is not a CIFAR-10 python batch ({type(error).__name__}: {error})") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = _cifar_folder(root)
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(folder / "test_batch")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y)


# --- fortune cookies (character-level language modelling) ---------------------------------------

FORTUNES_TEST_SEED = 12345  # the test documents never move with the validation seed
FORTUNES_TEST_SHARE = 0.1
MIN_CHAR_COUNT = 50  # rarer characters (accented letters, braces) share the unknown id
MAX_VOCABULARY = 99  # ids, the unknown one included
UNKNOWN = "\ufffd"
DOCUMENT_END = "\n%\n"  # the separator of the fortune files, kept so the model sees where one ends
_SEPARATOR_LINE = re.compile(r"^%[ \t]*$\n?", re.MULTILINE)


def read_fortunes(root: Path) -> list[str]:
    """The distinct fortunes of every fortune file in ``root`` (files in name order, fortunes in
    file order, a repeated fortune kept where it first occurs). strfile's indexes (``.dat``) and
    the ``.u8`` links to the text files are skipped."""
    if not root.is_dir():
        raise DatasetError(f"fortunes: no folder {root}; {_HOW_TO_GET['fortunes']}")
    files = sorted(path for path in root.iterdir()
                   if path.is_file() and not path.is_symlink() and path.suffix not in (".dat", ".u8"))
    documents: dict[str, None] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"fortunes: cannot read {path} as UTF-8 text: {error}") from error
        for block in _SEPARATOR_LINE.split(text):
            fortune = block.strip("\n")
            if fortune.strip():
                documents.setdefault(fortune)
    if len(documents) < 20:
        raise DatasetError(f"fortunes: {root} holds {len(documents)} fortunes in {len(files)} files, too few "
                           f"to split; {_HOW_TO_GET['fortunes']}")
    return list(documents)


def character_vocabulary(documents: list[str]) -> str:
    """Token id -> character: the unknown id 0, then every character seen at least ``MIN_CHAR_COUNT``
    times (the most frequent ones when there are more than the vocabulary holds) in code point order."""
    counts: dict[str, int] = {}
    for document in documents:
        for char in document + DOCUMENT_END:
            counts[char] = counts.get(char, 0) + 1
    frequent = sorted((c for c, n in counts.items() if n >= MIN_CHAR_COUNT), key=lambda c: (-counts[c], c))
    return UNKNOWN + "".join(sorted(frequent[:MAX_VOCABULARY - 1]))


def character_windows(documents: list[str], vocabulary: str, context: int) -> ImageSet:
    """The documents as one stream of token ids, cut into windows: inputs ``ids[i:i+T]``, labels
    ``ids[i+1:i+T+1]`` for i = 0, T, 2T, ... (the last incomplete window dropped)."""
    index = {char: i for i, char in enumerate(vocabulary) if i}
    text = "".join(document + DOCUMENT_END for document in documents)
    ids = np.fromiter((index.get(char, 0) for char in text), dtype=np.int64, count=len(text))
    positions = np.arange((len(ids) - 1) // context)[:, None] * context + np.arange(context)
    return ImageSet(torch.from_numpy(ids[positions]), torch.from_numpy(ids[positions + 1]))


def _fortunes(root: Path, validation_size: int, seed: int, context: int) -> DataSplits:
    if context < 1:
        raise DatasetError(f"fortunes: context={context} must be at least 1 character")
    documents = read_fortunes(root)
    # Documents stay in permuted order inside each split, so the first windows of a split (an
    # oracle's subset) come from all over the corpus.
    order = np.random.default_rng(FORTUNES_TEST_SEED).permutation(len(documents))
    test_count = max(1, round(len(documents) * FORTUNES_TEST_SHARE))
    test, rest = order[:test_count], np.sort(order[test_count:])
    vocabulary = character_vocabulary([documents[i] for i in rest])
    rest = rest[np.random.default_rng(seed).permutation(len(rest))]
    # The shortest run of documents whose stream holds validation_size windows is held out.
    stream_ends = np.cumsum([len(documents[i]) + len(DOCUMENT_END) for i in rest])
    held_out = int(np.searchsorted(stream_ends, validation_size * context + 1)) + 1
    if validation_size < 1 or held_out >= len(rest):
        raise DatasetError(f"fortunes: validation_size={validation_size} windows of {context} characters must be "
                           f"at least 1 and leave documents to train on ({len(rest)} outside the test split, "
                           f"{int(stream_ends[-1]):,} characters)")

    def windows(indices: np.ndarray) -> ImageSet:
        return character_windows([documents[i] for i in indices], vocabulary, context)

    return DataSplits(
        name="fortunes",
        train=windows(rest[held_out:]),
        validation=windows(rest[:held_out]).subset(validation_size),
        test=windows(test),
        num_classes=len(vocabulary),
        vocabulary=vocabulary,
    )
