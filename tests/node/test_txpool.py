"""Unit tests of the replica's proposal pool."""

from __future__ import annotations

import random

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


def test_committed_hashes_are_forgotten_past_the_horizon() -> None:
    pool = ProposalPool(max_txs=10, max_committed_remembered=100, committed_horizon_s=60.0)
    old, new = compute_hash(b"old"), compute_hash(b"new")
    pool.process_committed([old], now=1000.0)
    pool.process_committed([new], now=1050.0)
    assert pool.is_known(old) and pool.is_known(new)  # 50 s: both within the horizon
    pool.process_committed([], now=1061.0)
    assert not pool.is_known(old) and pool.is_known(new)
    assert pool.add(old, b"old")  # a copy arriving now is pooled (its nonce drops it later)


def test_pool_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ProposalPool(max_txs=0)



def _keyed(pool: ProposalPool, sender: bytes, nonce: int) -> bytes:
    raw = b"%s-%d" % (sender, nonce)
    assert pool.add(compute_hash(raw), raw, (sender, nonce))
    return raw


def test_a_leader_proposes_each_senders_transactions_in_nonce_order_only() -> None:
    pool = ProposalPool(max_txs=20)
    state = {b"a": 5, b"b": 0}
    # b's nonce 1 and a's nonce 7 arrive ahead of their predecessors.
    b1, a5, a7 = _keyed(pool, b"b", 1), _keyed(pool, b"a", 5), _keyed(pool, b"a", 7)
    first = pool.take_proposal(10, 1 << 20, state.__getitem__)
    assert first == [a5]  # a7 waits for a6, b1 for b0
    a6, b0 = _keyed(pool, b"a", 6), _keyed(pool, b"b", 0)
    # a5 is still in flight, so a6 follows it; b0 fills b's gap within the call.
    second = pool.take_proposal(10, 1 << 20, state.__getitem__)
    assert second == [a6, b0, b1, a7]
    assert pool.get_unproposed_count() == 0


def test_stale_nonces_are_dropped_and_a_view_change_recounts_what_is_in_flight() -> None:
    pool = ProposalPool(max_txs=20)
    state = {b"a": 3}
    old = _keyed(pool, b"a", 2)
    a3, a4 = _keyed(pool, b"a", 3), _keyed(pool, b"a", 4)
    assert pool.take_proposal(1, 1 << 20, state.__getitem__) == [a3]
    assert not pool.is_known(compute_hash(old)) and pool.stale_dropped == 1
    # The block with a3 is not carried into the new view: a3 may go again, a4 after it.
    pool.process_view_change(carried=())
    assert pool.take_proposal(10, 1 << 20, state.__getitem__) == [a3, a4]
    pool.process_view_change(carried=[compute_hash(a3)])
    assert pool.take_proposal(10, 1 << 20, state.__getitem__) == [a4]
    pool.process_committed([compute_hash(a3), compute_hash(a4)])
    state[b"a"] = 5
    a5 = _keyed(pool, b"a", 5)
    assert pool.take_proposal(10, 1 << 20, state.__getitem__) == [a5]


def test_nonce_order_holds_for_any_arrival_order() -> None:
    rng = random.Random(11)
    for _ in range(200):
        pool = ProposalPool(max_txs=100)
        state = {s: rng.randrange(3) for s in (b"a", b"b", b"c")}
        txs = [(s, state[s] + i) for s in state for i in range(rng.randrange(1, 6))]
        rng.shuffle(txs)
        proposed: list[tuple[bytes, int]] = []
        for sender, nonce in txs:
            _keyed(pool, sender, nonce)
            if rng.random() < 0.5:
                proposed += [_key(r) for r in pool.take_proposal(3, 1 << 20, state.__getitem__)]
        while batch := pool.take_proposal(3, 1 << 20, state.__getitem__):
            proposed += [_key(r) for r in batch]
        assert sorted(proposed) == sorted(txs)
        for sender, first in state.items():
            nonces = [n for s, n in proposed if s == sender]
            assert nonces == sorted(nonces) and nonces[0] == first


def _key(raw: bytes) -> tuple[bytes, int]:
    sender, _, nonce = raw.rpartition(b"-")
    return sender, int(nonce)


def test_a_gap_that_never_fills_holds_the_next_nonce_only_for_the_wait() -> None:
    pool = ProposalPool(max_txs=20)
    state = {b"a": 4}  # a4 was rejected in a block: the nonce stayed at 4
    a5 = _keyed(pool, b"a", 5)
    take = pool.take_proposal
    assert take(10, 1 << 20, state.__getitem__, now=100.0, max_wait_s=5.0) == []
    assert take(10, 1 << 20, state.__getitem__, now=104.9, max_wait_s=5.0) == []
    assert take(10, 1 << 20, state.__getitem__, now=105.0, max_wait_s=5.0) == [a5]
    assert pool.get_unproposed_count() == 0
