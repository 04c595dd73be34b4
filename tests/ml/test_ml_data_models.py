"""Digits split, dataset bytes, poisoning, models, canonical weights and metrics."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from ml_helpers import get_split

from ml.data import (
    Dataset,
    DatasetError,
    compute_digits_split,
    compute_flipped_labels,
    compute_random_labels,
    decode_dataset,
    encode_dataset,
)
from ml.metrics import MetricError, compute_metric_ppm
from ml.models import (
    ModelError,
    build_model,
    decode_weights,
    encode_weights,
    get_vector,
    process_load_vector,
)
from ml.spec import ModelSpec


def test_split_is_deterministic_non_iid_and_disjoint() -> None:
    split = get_split()
    again = compute_digits_split(5, seed=1)
    for a, b in zip(split.providers, again.providers, strict=True):
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    sizes = [p.size for p in split.providers]
    assert sum(sizes) + split.validation.size == 1797
    assert min(sizes) >= 20
    hist = np.stack([np.bincount(p.y, minlength=10) for p in split.providers])
    # non-IID: some provider holds under 2 % of a class that another holds over 30 % of
    share = hist / hist.sum(axis=0, keepdims=True)
    assert share.max() > 0.3 and share.min() < 0.02
    assert not np.array_equal(compute_digits_split(5, seed=2).providers[0].y, split.providers[0].y)
    assert float(split.validation.x.max()) <= 1.0


def test_dataset_bytes_round_trip() -> None:
    ds = get_split().providers[0]
    raw = encode_dataset(ds)
    back = decode_dataset(raw)
    assert np.array_equal(back.x, ds.x) and np.array_equal(back.y, ds.y)
    assert back.classes == 10 and encode_dataset(back) == raw


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw[:10],
        lambda raw: b"XXXX" + raw[4:],
        lambda raw: raw[:4] + b"\x02" + raw[5:],
        lambda raw: raw + b"\x00",
        lambda raw: raw[:-1],
        lambda raw: raw[:5] + struct.pack("<I", 0) + raw[9:],
        lambda raw: raw[:-8] + struct.pack("<q", 10),
        lambda raw: raw[:-8] + struct.pack("<q", -1),
        lambda raw: raw[:17] + struct.pack("<f", float("nan")) + raw[21:],
    ],
)
def test_bad_dataset_bytes_raise_dataset_error(mutate) -> None:
    with pytest.raises(DatasetError):
        decode_dataset(mutate(encode_dataset(get_split().providers[1])))


def test_dataset_array_checks() -> None:
    with pytest.raises(DatasetError):
        Dataset(np.zeros((3, 2), np.float64), np.zeros(3, np.int64), 2)
    with pytest.raises(DatasetError):
        Dataset(np.zeros((3, 2), np.float32), np.zeros(2, np.int64), 2)


def test_poisoning_changes_labels_only() -> None:
    ds = get_split().providers[2]
    flipped = compute_flipped_labels(ds)
    assert np.array_equal(flipped.y, 9 - ds.y) and np.array_equal(flipped.x, ds.x)
    noisy = compute_random_labels(ds, seed=3)
    assert not np.array_equal(noisy.y, ds.y)
    assert np.array_equal(noisy.y, compute_random_labels(ds, seed=3).y)


@pytest.mark.parametrize(
    "spec", [ModelSpec("logreg"), ModelSpec("mlp", (32, 16)), ModelSpec("cnn", (4, 8))]
)
def test_models_build_run_and_serialize_canonically(spec: ModelSpec) -> None:
    torch.manual_seed(0)
    model = build_model(spec, 64, 10)
    assert model(torch.zeros(3, 64)).shape == (3, 10)
    raw = encode_weights(model)
    vec = get_vector(model)
    torch.manual_seed(1)
    other = build_model(spec, 64, 10)
    assert encode_weights(other) != raw
    process_load_vector(other, vec)
    assert encode_weights(other) == raw
    tensors = decode_weights(raw)
    assert list(tensors) == sorted(tensors)
    total = sum(t.size for t in tensors.values())
    assert total == vec.numel()
    first = next(iter(tensors))
    assert np.array_equal(tensors[first], dict(model.named_parameters())[first].detach().numpy())


def test_model_errors() -> None:
    with pytest.raises(ModelError):
        build_model(ModelSpec("cnn", (4,)), 63, 10)
    with pytest.raises(ModelError):
        build_model(ModelSpec("transformer"), 64, 10)
    with pytest.raises(ModelError):
        process_load_vector(build_model(ModelSpec("logreg"), 64, 10), torch.zeros(3))
    with pytest.raises(ModelError):
        decode_weights(b"not weights")


def test_metrics_are_exact_integers() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    assert compute_metric_ppm("accuracy", p, y, 3) == 4 * 1_000_000 // 6
    # per class F1: c0 2*1/(2+2)=0.5, c1 2*2/(3+2)=0.8, c2 2*1/(1+2)=0.666666
    assert compute_metric_ppm("macro_f1", p, y, 3) == (500_000 + 800_000 + 666_666) // 3
    assert compute_metric_ppm("macro_f1", y, y, 4) == 1_000_000
    with pytest.raises(MetricError):
        compute_metric_ppm("auc", p, y, 3)
    with pytest.raises(MetricError):
        compute_metric_ppm("accuracy", p[:2], y, 3)
    with pytest.raises(MetricError):
        compute_metric_ppm("accuracy", p, y + 5, 3)
