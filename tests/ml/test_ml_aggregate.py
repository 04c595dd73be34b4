"""Robust aggregation rules: outliers excluded, ties deterministic, bad input typed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.aggregate import (
    AggregationError,
    compute_aggregate,
    compute_fedavg,
    compute_multikrum,
    compute_three_sigma,
    compute_trimmed_mean,
    is_attacked_round,
)
from ml.spec import AggregationSpec


def honest_with_outlier(n: int = 5, dim: int = 50, outlier: int = 3, seed: int = 0) -> list:
    gen = np.random.Generator(np.random.PCG64(seed))
    centre = gen.normal(size=dim)
    updates = [centre + 0.05 * gen.normal(size=dim) for _ in range(n)]
    updates[outlier] = 40.0 * gen.normal(size=dim)
    return [u.astype(np.float32) for u in updates]


def test_fedavg_weights_by_sample_count() -> None:
    result = compute_fedavg([np.zeros(3, np.float32), np.ones(3, np.float32)], [1, 3])
    assert result.kept == (0, 1)
    assert torch.allclose(result.vector, torch.full((3,), 0.75))
    assert result.vector.dtype == torch.float32


@pytest.mark.parametrize("outlier", [0, 2, 4])
def test_multikrum_excludes_clear_outlier(outlier: int) -> None:
    updates = honest_with_outlier(outlier=outlier)
    result = compute_multikrum(updates, [10] * 5, f=1, m=4)
    assert outlier not in result.kept
    assert len(result.kept) == 4
    honest = [u for i, u in enumerate(updates) if i != outlier]
    assert torch.allclose(result.vector, torch.from_numpy(np.mean(honest, axis=0)), atol=1e-5)


@pytest.mark.parametrize("outlier", [0, 3])
def test_three_sigma_excludes_clear_outlier_and_keeps_honest(outlier: int) -> None:
    updates = honest_with_outlier(outlier=outlier)
    result = compute_three_sigma(updates, [10] * 5)
    assert result.kept == tuple(i for i in range(5) if i != outlier)


def test_three_sigma_cross_round_check_skips_filter_when_history_agrees() -> None:
    updates = honest_with_outlier()
    # every client repeats its previous direction: no attack detected, everyone averaged
    assert not is_attacked_round(updates, updates, 200_000)
    assert compute_three_sigma(updates, None, previous=updates).kept == (0, 1, 2, 3, 4)
    # the outlier changes direction: attack detected, it is removed
    previous = list(updates)
    previous[3] = -previous[3]
    assert is_attacked_round(updates, previous, 200_000)
    assert 3 not in compute_three_sigma(updates, None, previous=previous).kept


def test_trimmed_mean_excludes_outlier_and_bounds_it() -> None:
    updates = honest_with_outlier(outlier=1)
    result = compute_trimmed_mean(updates, beta_ppm=200_000)
    assert 1 not in result.kept
    honest = np.stack([u for i, u in enumerate(updates) if i != 1])
    vec = result.vector.numpy()
    assert (vec >= honest.min(axis=0) - 1e-6).all() and (vec <= honest.max(axis=0) + 1e-6).all()


def test_ties_go_to_the_lower_index() -> None:
    same = [np.ones(4, np.float32)] * 5
    assert compute_multikrum(same, None, f=1, m=2).kept == (0, 1)
    assert compute_multikrum(same, None, f=1, m=3).kept == (0, 1, 2)
    # two identical far points, two identical near ones: deterministic pick
    pts = [np.zeros(2, np.float32)] * 2 + [np.full(2, 5.0, np.float32)] * 2 + [
        np.full(2, 0.1, np.float32)]
    first = compute_multikrum(pts, None, f=0, m=3).kept
    assert first == compute_multikrum(pts, None, f=0, m=3).kept
    assert first == (0, 1, 4)


def test_aggregate_is_deterministic_and_dispatches() -> None:
    updates = honest_with_outlier(seed=5)
    for spec in (
        AggregationSpec("fedavg"),
        AggregationSpec("multikrum", f=1, m=3),
        AggregationSpec("trimmed_mean", beta_ppm=200_000),
        AggregationSpec("three_sigma"),
    ):
        a = compute_aggregate(spec, updates, [3, 1, 4, 1, 5])
        b = compute_aggregate(spec, [torch.from_numpy(u) for u in updates], [3, 1, 4, 1, 5])
        assert a.kept == b.kept
        assert torch.equal(a.vector, b.vector)


@pytest.mark.parametrize(
    "updates",
    [
        [],
        [np.zeros(3, np.float32), np.zeros(4, np.float32)],
        [np.zeros((2, 2), np.float32)],
        [np.array([1.0, np.nan], np.float32)],
        [np.array([np.inf], np.float32)],
    ],
)
def test_bad_updates_raise_typed_error(updates: list) -> None:
    with pytest.raises(AggregationError):
        compute_fedavg(updates)


def test_bad_parameters_raise_typed_error() -> None:
    updates = honest_with_outlier()
    with pytest.raises(AggregationError):
        compute_multikrum(updates, None, f=1, m=6)
    with pytest.raises(AggregationError):
        compute_trimmed_mean(updates, beta_ppm=500_000)
    with pytest.raises(AggregationError):
        compute_fedavg(updates, [1, 1, 1])
    with pytest.raises(AggregationError):
        compute_fedavg(updates, [1, 1, 1, 1, -1])
    with pytest.raises(AggregationError):
        compute_aggregate(AggregationSpec("median"), updates)
