"""Provider datasets: the in-memory form, a byte format, and digits test data.

A dataset is float32 features ``x`` of shape ``(n, features)`` and int64
labels ``y`` in ``[0, classes)``.

Byte format (what a provider encrypts as a data asset), all little-endian::

    magic   b"DMDS"            4 bytes
    version u8 = 1             1 byte
    n       u32                samples
    d       u32                features per sample
    classes u32                label range
    x       n * d float32      row-major
    y       n int64

:func:`decode_dataset` checks the magic, bounds, exact length, that every
feature is finite and every label is in range; any failure is a
:class:`DatasetError`.

:func:`compute_digits_split` builds test data from scikit-learn's bundled
digits (no download): a held-out validation set for the buyer and a non-IID
Dirichlet(alpha) label split among providers, from a seeded numpy Generator.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"DMDS"
VERSION = 1
_HEADER = struct.Struct("<4sBIII")
MAX_SAMPLES = 1_000_000
MAX_FEATURES = 4096
MAX_CLASSES = 1000
MAX_BYTES = 256 * 1024 * 1024
MAX_PROVIDERS = 32


class DatasetError(ValueError):
    """Dataset bytes or arrays that are malformed or out of bounds."""


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (float32, n x d) and labels ``y`` (int64, n) over ``classes`` labels."""

    x: np.ndarray
    y: np.ndarray
    classes: int

    def __post_init__(self) -> None:
        check_dataset(self.x, self.y, self.classes)

    @property
    def size(self) -> int:
        """Number of samples."""
        return int(self.y.shape[0])

    @property
    def features(self) -> int:
        """Number of features per sample."""
        return int(self.x.shape[1])


def check_dataset(x: np.ndarray, y: np.ndarray, classes: int) -> None:
    """Raise DatasetError unless x, y and classes form a valid bounded dataset."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2):
        raise DatasetError("x must be a 2-D float32 array")
    if not (isinstance(y, np.ndarray) and y.dtype == np.int64 and y.ndim == 1):
        raise DatasetError("y must be a 1-D int64 array")
    n, d = x.shape
    if not (1 <= n <= MAX_SAMPLES and 1 <= d <= MAX_FEATURES and 2 <= classes <= MAX_CLASSES):
        raise DatasetError(f"shape {n}x{d} with {classes} classes is out of bounds")
    if y.shape[0] != n:
        raise DatasetError(f"{n} feature rows but {y.shape[0]} labels")
    if not np.isfinite(x).all():
        raise DatasetError("features hold NaN or infinity")
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise DatasetError(f"labels outside [0, {classes})")


def encode_dataset(ds: Dataset) -> bytes:
    """Return the byte form of ``ds`` (see module doc)."""
    header = _HEADER.pack(MAGIC, VERSION, ds.size, ds.features, ds.classes)
    return header + ds.x.astype("<f4").tobytes() + ds.y.astype("<i8").tobytes()


def decode_dataset(data: bytes) -> Dataset:
    """Parse dataset bytes with bounds checks; raises DatasetError with the reason."""
    if len(data) > MAX_BYTES:
        raise DatasetError(f"dataset is {len(data)} bytes, limit {MAX_BYTES}")
    if len(data) < _HEADER.size:
        raise DatasetError("dataset shorter than its header")
    magic, version, n, d, classes = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DatasetError("not a dmchain dataset (bad magic)")
    if version != VERSION:
        raise DatasetError(f"dataset version {version} is not supported")
    if not (1 <= n <= MAX_SAMPLES and 1 <= d <= MAX_FEATURES and 2 <= classes <= MAX_CLASSES):
        raise DatasetError(f"header shape {n}x{d} with {classes} classes is out of bounds")
    expected = _HEADER.size + 4 * n * d + 8 * n
    if len(data) != expected:
        raise DatasetError(f"dataset is {len(data)} bytes, header implies {expected}")
    x_end = _HEADER.size + 4 * n * d
    x = np.frombuffer(data, dtype="<f4", count=n * d, offset=_HEADER.size).reshape(n, d)
    y = np.frombuffer(data, dtype="<i8", count=n, offset=x_end)
    return Dataset(x.astype(np.float32), y.astype(np.int64), int(classes))


@dataclass(frozen=True)
class DigitsSplit:
    """Provider datasets and the buyer's validation set."""

    providers: tuple[Dataset, ...]
    validation: Dataset


def compute_digits_split(
    providers: int,
    seed: int,
    alpha_milli: int = 500,
    validation_fraction_ppm: int = 200_000,
    min_samples: int = 20,
) -> DigitsSplit:
    """Split sklearn digits (features scaled to [0, 1]) into a validation set and providers.

    Each class's samples are divided among providers by Dirichlet(alpha) shares
    (alpha = alpha_milli / 1000); the draw is repeated, at most 100 times, until
    every provider holds ``min_samples``. Same arguments, same split.
    """
    from sklearn.datasets import load_digits

    if not 1 <= providers <= MAX_PROVIDERS:
        raise DatasetError(f"providers must be in [1, {MAX_PROVIDERS}], got {providers}")
    if not (1 <= alpha_milli <= 1_000_000 and 0 < validation_fraction_ppm < 1_000_000):
        raise DatasetError("alpha_milli or validation_fraction_ppm out of bounds")
    bunch = load_digits()
    x_all = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y_all = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    order = rng.permutation(len(y_all))
    n_val = len(order) * validation_fraction_ppm // 1_000_000
    val_idx, train_idx = order[:n_val], order[n_val:]
    alpha = alpha_milli / 1000.0
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(providers)]
        for label in range(10):
            idx = train_idx[y_all[train_idx] == label]
            shares = rng.dirichlet([alpha] * providers)
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
            for p, chunk in enumerate(np.split(idx, cuts)):
                parts[p].extend(int(i) for i in chunk)
        if min(len(p) for p in parts) >= min_samples:
            break
    else:
        raise DatasetError(f"no Dirichlet split gave every provider {min_samples} samples")
    datasets = tuple(
        Dataset(x_all[np.sort(p)], y_all[np.sort(p)], 10) for p in (np.array(q) for q in parts)
    )
    return DigitsSplit(datasets, Dataset(x_all[val_idx], y_all[val_idx], 10))


def compute_flipped_labels(ds: Dataset) -> Dataset:
    """Label-flipping poison: every label y becomes ``classes - 1 - y``."""
    return Dataset(ds.x.copy(), (ds.classes - 1 - ds.y).astype(np.int64), ds.classes)


def compute_random_labels(ds: Dataset, seed: int) -> Dataset:
    """Poison that keeps the features and draws every label uniformly (seeded)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    y = rng.integers(0, ds.classes, size=ds.size, dtype=np.int64)
    return Dataset(ds.x.copy(), y, ds.classes)
