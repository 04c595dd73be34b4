"""The ledger's record cache: bounded, and never answers a stale record."""

from __future__ import annotations

import random

from ledger import schema
from ledger.records import Account, encode_record
from ledger.state import StoreReader
from ledger.store import MemoryStore


class CountingStore(MemoryStore):
    """A memory store that counts reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return super().get(key)


def _key(i: int) -> bytes:
    return schema.account_key(i.to_bytes(32, "big"))


def _commit(store: MemoryStore, reader: StoreReader, writes: dict[bytes, Account]) -> None:
    store.write({k: encode_record(k, v) for k, v in writes.items()})
    reader.record_commit(dict(writes))


def test_cache_stays_within_its_bound_while_the_state_grows() -> None:
    store = MemoryStore()
    reader = StoreReader(store, cache_size=100)
    for i in range(1_000):
        _commit(store, reader, {_key(i): Account(i, 0)})
        reader.get(_key(i // 2))
        assert len(reader) <= 100
    assert reader.get(_key(7)) == Account(7, 0)  # forgotten records are read again


def test_records_in_use_stay_cached() -> None:
    store = CountingStore()
    reader = StoreReader(store, cache_size=10)
    _commit(store, reader, {_key(0): Account(5, 0)})
    assert reader.get(_key(0)) == Account(5, 0)
    for i in range(1, 200):
        _commit(store, reader, {_key(i): Account(i, 0)})
        assert reader.get(_key(0)) == Account(5, 0)
        reader.get(_key(i))
    # the hot record moves back to the young generation whenever it ages
    assert store.reads == 200


def test_records_written_but_not_read_take_no_place_in_the_cache() -> None:
    store = CountingStore()
    reader = StoreReader(store, cache_size=100)
    assert reader.get(_key(0)) is None  # read before its first write: cached as missing
    for i in range(50):
        _commit(store, reader, {_key(i): Account(i, 0)})
    assert len(reader) == 1
    assert reader.get(_key(0)) == Account(0, 0) and store.reads == 1  # updated in place
    assert reader.get(_key(7)) == Account(7, 0) and store.reads == 2
    _commit(store, reader, {_key(7): Account(70, 0)})
    assert reader.get(_key(7)) == Account(70, 0) and store.reads == 2


def test_cache_agrees_with_the_store_under_random_commits_and_reads() -> None:
    rng = random.Random(11)
    store = MemoryStore()
    reader = StoreReader(store, cache_size=8)
    truth: dict[bytes, Account] = {}
    for step in range(5_000):
        if rng.random() < 0.5:
            writes = {_key(rng.randrange(30)): Account(step, rng.randrange(5)) for _ in range(3)}
            _commit(store, reader, writes)
            truth.update(writes)
        else:
            key = _key(rng.randrange(30))
            assert reader.get(key) == truth.get(key), f"step {step}"
        assert len(reader) <= 8


def _unbonding(height: int) -> bytes:
    return schema.unbonding_key(height)


def test_lookups_of_absent_unbonding_keys_never_reach_the_store() -> None:
    store = CountingStore()
    store.write({_unbonding(5): encode_record(_unbonding(5), [])})
    reader = StoreReader(store, cache_size=100)
    for height in range(1, 1_000):
        if height != 5:
            assert reader.get(_unbonding(height)) is None
    assert store.reads == 0  # one prefix scan found the only key
    assert reader.get(_unbonding(5)) == []
    assert store.reads == 1
    assert reader.get_indexed_key_count() == 1


def test_unbonding_index_follows_commits() -> None:
    store = CountingStore()
    reader = StoreReader(store, cache_size=100)
    assert reader.get(_unbonding(10)) is None  # builds the (empty) index
    entries = [[bytes(32), bytes(32), 7]]
    store.write({_unbonding(10): encode_record(_unbonding(10), entries)})
    reader.record_commit({_unbonding(10): entries})
    assert reader.get(_unbonding(10)) == entries
    store.write({_unbonding(10): None})
    reader.record_commit({_unbonding(10): None})
    assert reader.get(_unbonding(10)) is None
    assert reader.get_indexed_key_count() == 0


def test_indexed_reader_agrees_with_the_store_under_random_commits_and_reads() -> None:
    rng = random.Random(12)
    store = MemoryStore()
    reader = StoreReader(store, cache_size=8)
    truth: dict[bytes, list[list[object]]] = {}
    for step in range(5_000):
        if rng.random() < 0.4:
            writes: dict[bytes, list[list[object]] | None] = {}
            for _ in range(2):
                key = _unbonding(rng.randrange(40))
                writes[key] = None if rng.random() < 0.5 else [[bytes(32), bytes(32), step]]
            store.write({k: None if v is None else encode_record(k, v) for k, v in writes.items()})
            reader.record_commit(dict(writes))
            for key, value in writes.items():
                if value is None:
                    truth.pop(key, None)
                else:
                    truth[key] = value
        else:
            key = _unbonding(rng.randrange(40))
            assert reader.get(key) == truth.get(key), f"step {step}"
    assert reader.get_indexed_key_count() == len(truth)
