"""Unit tests of the replica's proposal pool."""

from __future__ import annotations

import pytest

from consensus.crypto import compute_hash
from node.txpool import ProposalPool


def _fill(pool: ProposalPool, count: int) -> list[bytes]:
    hashes = []
    for i in range(count):
        raw = b"tx-%d" % i
        assert pool.add(compute_hash(raw), raw)
        hashes.append(compute_hash(raw))
    return hashes


def test_proposals_never_repeat_a_transaction_in_flight() -> None:
    pool = ProposalPool(max_txs=10)
    _fill(pool, 5)
    first = pool.take_proposal(3, 1 << 20)
    second = pool.take_proposal(10, 1 << 20)
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
    assert pool.take_proposal(10, 1 << 20) == [] and pool.get_unproposed_count() == 0


def test_view_change_keeps_carried_transactions_in_flight_and_frees_the_rest() -> None:
    pool = ProposalPool(max_txs=10)
    hashes = _fill(pool, 6)
    proposed = pool.take_proposal(4, 1 << 20)  # tx-0 .. tx-3 in flight
    # the new view re-proposes the block holding tx-0 and tx-1 (and a tx not pooled)
    pool.process_view_change([hashes[0], hashes[1], compute_hash(b"elsewhere")])
    again = pool.take_proposal(10, 1 << 20)
    assert again == [b"tx-2", b"tx-3", b"tx-4", b"tx-5"]
    assert not set(again) & set(proposed[:2])
    pool.process_view_change()
    assert len(pool.take_proposal(10, 1 << 20)) == 6  # nothing carried: all may go again


def test_committed_transactions_leave_the_pool_and_are_remembered() -> None:
    pool = ProposalPool(max_txs=3, max_committed_remembered=2)
    hashes = _fill(pool, 3)
    assert not pool.add(compute_hash(b"tx-9"), b"tx-9") and pool.dropped == 1
    pool.take_proposal(3, 1 << 20)
    pool.process_committed(hashes)
    assert len(pool) == 0 and pool.get_unproposed_count() == 0
    assert not pool.is_known(hashes[0]) and pool.is_known(hashes[2])  # 2 remembered
    assert not pool.add(hashes[2], b"tx-2")


def test_pool_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ProposalPool(max_txs=0)

