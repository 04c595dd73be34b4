"""Integer bid settlement and quality coefficients: exact sums, bounds, ordering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.quality import QualityError, compute_quality, compute_quality_targets
from ml.settlement import (
    SettlementError,
    SettlementPolicy,
    compute_eligible,
    compute_settlement,
    compute_split,
)
from ml.spec import PPM

contribs = st.lists(st.integers(-5_000_000, 5_000_000), min_size=1, max_size=12)


def test_default_split_30_70_with_fixed_and_proportional_parts() -> None:
    s = compute_settlement(1_000_000, 950_000, 900_000, [1, 1, 1], [300, 100, 0, -50])
    assert s.met and s.buyer_refund == 0
    assert s.executor_payouts == (100_000, 100_000, 100_000)
    # data part 700_000: fixed 140_000 = 35_000 each; 560_000 by positive contribution 3:1
    assert s.provider_payouts == (35_000 + 420_000, 35_000 + 140_000, 35_000, 35_000)


def test_missed_threshold_refunds_data_part_and_pays_executors() -> None:
    s = compute_settlement(1_000_001, 899_999, 900_000, [2, 1], [5, 5])
    assert not s.met
    assert s.provider_payouts == (0, 0)
    assert sum(s.executor_payouts) == 300_000
    assert s.buyer_refund == 1_000_001 - 300_000


def test_ineligible_provider_gets_nothing_and_no_eligible_refunds() -> None:
    s = compute_settlement(1000, 1, 0, [1], [10, 10], eligible=[True, False])
    assert s.provider_payouts[1] == 0 and s.provider_payouts[0] == 700
    s = compute_settlement(1000, 1, 0, [1], [10, 10], eligible=[False, False])
    assert s.buyer_refund == 700


def test_split_remainders_go_to_largest_then_lowest_index() -> None:
    assert compute_split(10, [1, 1, 1]) == [4, 3, 3]
    assert compute_split(5, [1, 2]) == [2, 3]
    assert compute_split(0, [1, 0]) == [0, 0]


@given(
    bid=st.integers(0, 10**30),
    metric=st.integers(0, PPM),
    tau=st.integers(0, PPM),
    executors=st.lists(st.integers(0, 50), min_size=1, max_size=8).filter(lambda w: sum(w) > 0),
    contributions=contribs,
    exec_share=st.integers(0, PPM),
    fixed_share=st.integers(0, PPM),
    data=st.data(),
)
def test_settlement_sums_exactly(bid, metric, tau, executors, contributions, exec_share,
                                 fixed_share, data) -> None:
    eligible = data.draw(st.lists(st.booleans(), min_size=len(contributions),
                                  max_size=len(contributions)))
    s = compute_settlement(bid, metric, tau, executors, contributions, eligible,
                           SettlementPolicy(exec_share, fixed_share))
    assert s.buyer_refund + sum(s.executor_payouts) + sum(s.provider_payouts) == bid
    assert all(p >= 0 for p in (*s.executor_payouts, *s.provider_payouts, s.buyer_refund))
    assert sum(s.executor_payouts) == bid * exec_share // PPM
    assert all(p == 0 for p, e in zip(s.provider_payouts, eligible, strict=True) if not e)
    if s.met and any(eligible):
        # among eligible providers, a larger positive contribution never earns less
        pairs = [(max(0, c), p) for c, p, e in
                 zip(contributions, s.provider_payouts, eligible, strict=True) if e]
        for c1, p1 in pairs:
            for c2, p2 in pairs:
                if c1 > c2:
                    assert p1 >= p2 - 2  # one unit of remainder in each of the two splits


def test_settlement_bad_input() -> None:
    with pytest.raises(SettlementError):
        compute_settlement(-1, 0, 0, [1], [1])
    with pytest.raises(SettlementError):
        compute_settlement(10, 0, 0, [0, 0], [1])
    with pytest.raises(SettlementError):
        compute_settlement(10, 0, 0, [1], [1], eligible=[True, True])
    with pytest.raises(SettlementError):
        compute_settlement(10, 0, 0, [1], [1.5])  # type: ignore[list-item]
    with pytest.raises(SettlementError):
        compute_eligible([3], 2)


def test_eligibility_is_kept_in_half_the_rounds() -> None:
    assert compute_eligible([10, 5, 4, 0], 10) == [True, True, False, False]


def test_quality_targets_and_update() -> None:
    assert compute_quality_targets([0, 50, 100]) == [10_000, 505_000, PPM]
    assert compute_quality([7, 7]) == [PPM, PPM]
    assert compute_quality([0, 100], previous=[PPM, PPM]) == [505_000, PPM]
    assert compute_quality([0, 100], previous=[PPM, 10_000], step_ppm=0) == [PPM, 10_000]
    with pytest.raises(QualityError):
        compute_quality([1, 2], previous=[0, PPM])
    with pytest.raises(QualityError):
        compute_quality([])


@given(contributions=contribs, prev=st.integers(1, PPM), step=st.integers(0, PPM))
def test_quality_bounds_and_lowest_contributor_lowest(contributions, prev, step) -> None:
    q = compute_quality(contributions, previous=[prev] * len(contributions), step_ppm=step)
    assert all(0 < v <= PPM for v in q)
    low = min(range(len(q)), key=contributions.__getitem__)
    assert q[low] == min(q)
    for c1, q1 in zip(contributions, q, strict=True):
        for c2, q2 in zip(contributions, q, strict=True):
            if c1 < c2:
                assert q1 <= q2
    fresh = compute_quality(contributions)
    assert fresh[low] == min(fresh) and all(0 < v <= PPM for v in fresh)
