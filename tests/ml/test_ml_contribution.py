"""Contribution scoring against synthetic utilities with known answers."""

from __future__ import annotations

import itertools

import pytest

from ml.contribution import ContributionError, compute_loo, compute_sampled_shapley
from ml.seeding import compute_permutation, compute_subseed


def additive(values: list[int]):
    calls: list[tuple[int, ...]] = []

    def utility(subset: tuple[int, ...]) -> int:
        calls.append(subset)
        return 500_000 + sum(values[i] for i in subset)

    return utility, calls


def test_loo_additive_utility_recovers_values() -> None:
    values = [30_000, -200_000, 10_000, 0]
    utility, calls = additive(values)
    assert compute_loo(utility, 4, kept=[0, 2, 3]) == values
    assert len(calls) == len(set(calls))  # each set evaluated once


def test_loo_excluded_harmful_client_scores_negative() -> None:
    def utility(subset: tuple[int, ...]) -> int:
        return 100_000 if 3 in subset else 900_000 - 1000 * (3 - len(subset))

    scores = compute_loo(utility, 4, kept=[0, 1, 2])
    assert scores[3] == 100_000 - 900_000
    assert scores[:3] == [1000, 1000, 1000]
    assert min(range(4), key=scores.__getitem__) == 3


def test_sampled_shapley_exact_for_additive_and_deterministic() -> None:
    values = [7_000, -3_000, 12_000, 0, 5_000]
    utility, _ = additive(values)
    assert compute_sampled_shapley(utility, 5, samples=8, seed=42) == values
    # non-additive utility: same seed, same answer; Shapley efficiency within rounding
    def majority(subset: tuple[int, ...]) -> int:
        return 1_000_000 if len(subset) >= 3 else 0

    a = compute_sampled_shapley(majority, 5, samples=30, seed=9)
    assert a == compute_sampled_shapley(majority, 5, samples=30, seed=9)
    assert 1_000_000 - 5 <= sum(a) <= 1_000_000


def test_contribution_bad_arguments() -> None:
    utility, _ = additive([0, 0])
    with pytest.raises(ContributionError):
        compute_loo(utility, 2, kept=[2])
    with pytest.raises(ContributionError):
        compute_loo(utility, 2, kept=[0, 0])
    with pytest.raises(ContributionError):
        compute_sampled_shapley(utility, 2, samples=0, seed=1)


def test_permutations_are_uniform_enough_and_stable() -> None:
    counts: dict[tuple[int, ...], int] = {}
    for s in range(1200):
        p = tuple(compute_permutation(compute_subseed(5, "t", s), 3))
        counts[p] = counts.get(p, 0) + 1
    assert set(counts) == set(itertools.permutations(range(3)))
    assert all(120 < c < 280 for c in counts.values())
    assert compute_permutation(123, 10) == compute_permutation(123, 10)
    assert sorted(compute_permutation(99, 1000)) == list(range(1000))
    assert compute_subseed(1, "a") != compute_subseed(1, "b")
