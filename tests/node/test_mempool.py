"""Mempool bounds, deduplication, nonce order and sender fairness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.mempool import Mempool, MempoolEntry, MempoolFullError


def _entry(sender: int, nonce: int, size: int = 10) -> MempoolEntry:
    tx_hash = bytes([sender, nonce % 256, nonce // 256]) * 8
    return MempoolEntry(tx_hash, bytes([sender]) * 32, nonce, b"x" * size)


def test_dedup_and_replayed_nonce() -> None:
    pool = Mempool(100, 10_000, 10)
    assert pool.add(_entry(1, 0), next_nonce=0)
    assert not pool.add(_entry(1, 0), next_nonce=0)
    with pytest.raises(ValueError, match="already used"):
        pool.add(_entry(1, 3), next_nonce=5)


def test_bounds() -> None:
    pool = Mempool(2, 10_000, 10)
    pool.add(_entry(1, 0), 0)
    pool.add(_entry(2, 0), 0)
    with pytest.raises(MempoolFullError):
        pool.add(_entry(3, 0), 0)
    pool = Mempool(100, 25, 10)
    pool.add(_entry(1, 0), 0)
    pool.add(_entry(1, 1), 0)
    with pytest.raises(MempoolFullError):
        pool.add(_entry(1, 2), 0)
    pool = Mempool(100, 10_000, 2)
    pool.add(_entry(1, 0), 0)
    pool.add(_entry(1, 1), 0)
    with pytest.raises(MempoolFullError, match="sender"):
        pool.add(_entry(1, 2), 0)


def test_gap_blocks_sender_until_filled() -> None:
    pool = Mempool(100, 10_000, 10)
    pool.add(_entry(1, 1), 0)
    assert pool.take_batch(10, 10_000) == []
    pool.add(_entry(1, 0), 0)
    assert [e.nonce for e in pool.take_batch(10, 10_000)] == [0, 1]
    assert len(pool) == 0 and pool.size_bytes == 0


def test_round_robin_fairness() -> None:
    pool = Mempool(1000, 100_000, 100)
    for n in range(50):
        pool.add(_entry(1, n), 0)
    pool.add(_entry(2, 0), 0)
    pool.add(_entry(3, 0), 0)
    batch = pool.take_batch(3, 100_000)
    assert sorted(e.sender[0] for e in batch) == [1, 2, 3]


def test_committed_nonce_drops_stale_entries() -> None:
    pool = Mempool(100, 10_000, 10)
    for n in range(4):
        pool.add(_entry(1, n), 0)
    pool.process_committed_nonce(bytes([1]) * 32, 2)
    assert [e.nonce for e in pool.take_batch(10, 10_000)] == [2, 3]


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 20)), max_size=80))
def test_batches_are_gapless_per_sender_and_accounting_holds(ops: list[tuple[int, int]]) -> None:
    pool = Mempool(50, 5_000, 15)
    for sender, nonce in ops:
        try:
            pool.add(_entry(sender, nonce), 0)
        except (ValueError, MempoolFullError):
            pass
        assert pool.size_bytes == 10 * len(pool)
    taken: dict[bytes, list[int]] = {}
    while batch := pool.take_batch(7, 1_000):
        for e in batch:
            taken.setdefault(e.sender, []).append(e.nonce)
    for nonces in taken.values():
        assert nonces == list(range(len(nonces)))

