"""GroupCommitStore: pending writes are readable at once and reach disk whole, in order."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ledger.store import LevelDBStore
from node.group_store import GroupCommitStore, migrate_consensus_dir


def _open(path: Path, **kwargs: int) -> tuple[GroupCommitStore, LevelDBStore]:
    db = LevelDBStore(str(path))
    return GroupCommitStore(db, **kwargs), db


def _durable(path: Path) -> dict[bytes, bytes]:
    db = LevelDBStore(str(path))
    try:
        return dict(db.iterate(b""))
    finally:
        db.close()


def test_reads_see_pending_writes_and_deletes_before_any_flush(tmp_path: Path) -> None:
    store, db = _open(tmp_path / "db")
    store.write({b"a1": b"x", b"a2": b"y", b"b1": b"z"})
    store.flush()
    store.write({b"a1": b"x2", b"a2": None, b"a3": b"w"})
    assert store.get(b"a1") == b"x2"
    assert store.get(b"a2") is None
    assert store.get(b"a3") == b"w"
    assert store.get(b"b1") == b"z"
    assert list(store.iterate(b"a")) == [(b"a1", b"x2"), (b"a3", b"w")]
    # Nothing of the second batch is on disk yet.
    assert db.get(b"a1") == b"x" and db.get(b"a2") == b"y" and db.get(b"a3") is None
    store.close()


def test_a_random_history_reads_like_a_dict_and_disk_holds_the_last_flush(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    path = tmp_path / "db"
    store, db = _open(path)
    model: dict[bytes, bytes] = {}
    at_last_flush: dict[bytes, bytes] = {}
    keys = [bytes([p]) + bytes([i]) for p in b"abc" for i in range(12)]
    for _ in range(600):
        if rng.random() < 0.75:
            batch: dict[bytes, bytes | None] = {}
            for key in rng.sample(keys, rng.randint(1, 5)):
                batch[key] = None if rng.random() < 0.25 else rng.randbytes(rng.randint(0, 9))
            store.write(batch)
            for key, value in batch.items():
                if value is None:
                    model.pop(key, None)
                else:
                    model[key] = value
        else:
            store.flush()
            at_last_flush = dict(model)
        for key in rng.sample(keys, 6):
            assert store.get(key) == model.get(key)
        prefix = rng.choice([b"", b"a", b"b", b"c", b"a1", b"z"])
        expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
        assert list(store.iterate(prefix)) == expected
    db.close()  # a crash: what was not flushed is lost, whole batches only
    assert _durable(path) == at_last_flush


def test_close_makes_every_pending_write_durable(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store, _ = _open(path)
    store.write({b"k": b"v"})
    store.write({b"k": b"v2", b"j": b"w"})
    store.close()
    store.close()  # idempotent
    assert _durable(path) == {b"k": b"v2", b"j": b"w"}


def test_the_pending_bound_counts_what_is_not_yet_flushed(tmp_path: Path) -> None:
    store, db = _open(tmp_path / "db", max_pending_bytes=100)
    store.write({b"k1": bytes(60)})
    assert not store.is_over_limit()
    store.write({b"k2": bytes(60)})
    assert store.is_over_limit() and store.get_pending_bytes() == 124
    assert store.has_pending() and db.get(b"k2") is None
    store.flush()
    assert not store.is_over_limit() and store.get_pending_bytes() == 0
    assert not store.has_pending() and db.get(b"k2") == bytes(60)
    store.close()


def _legacy(path: Path, records: dict[bytes, bytes]) -> None:
    db = LevelDBStore(str(path))
    db.write(dict(records))
    db.close()


def test_consensus_records_of_the_old_layout_move_into_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _legacy(data / "consensus", {b"pbft/view": b"\x01", b"pos/state": b"\x02"})
    store, _ = _open(data / "ledger")
    assert migrate_consensus_dir(data / "consensus", store, b"N") == 2
    assert not (data / "consensus").exists() and not (data / "consensus.migrated").exists()
    assert list(store.iterate(b"N")) == [(b"Npbft/view", b"\x01"), (b"Npos/state", b"\x02")]
    assert migrate_consensus_dir(data / "consensus", store, b"N") == 0
    store.close()
    assert _durable(data / "ledger") == {b"Npbft/view": b"\x01", b"Npos/state": b"\x02"}


def test_a_migration_cut_short_after_the_rename_finishes_on_the_next_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _legacy(data / "consensus.migrated", {b"pbft/view": b"\x01"})
    store, _ = _open(data / "ledger")
    assert migrate_consensus_dir(data / "consensus", store, b"N") == 0
    assert not (data / "consensus.migrated").exists()
    store.close()


@pytest.mark.parametrize("max_pending_bytes", [0, -1])
def test_a_bound_that_is_not_positive_is_refused(tmp_path: Path, max_pending_bytes: int) -> None:
    db = LevelDBStore(str(tmp_path / "db"))
    with pytest.raises(Exception, match="positive"):
        GroupCommitStore(db, max_pending_bytes=max_pending_bytes)
    db.close()


def test_a_node_started_on_the_old_layout_keeps_its_consensus_records(tmp_path: Path) -> None:
    """A replica's view persisted in data/consensus (the old layout) survives the move."""
    from consensus import codec
    from node.config import load_config
    from node.keys import load_node_keys
    from node.runtime import Node
    from node.testnet import TestnetSpec, process_write_testnet

    process_write_testnet(TestnetSpec(out=tmp_path / "net", pbft=4, pos=1, clients=1))
    home = tmp_path / "net" / "node00"
    config, keys = load_config(home), load_node_keys(home)
    data = config.data_path
    data.mkdir(parents=True, exist_ok=True)
    _legacy(data / "consensus", {b"pbft/view": codec.encode([5, False])})
    node = Node(config, keys)
    assert node.pbft is not None and node.pbft.view == 5
    assert not (data / "consensus").exists()
    node.close()
    assert _durable(data / "ledger")[b"Npbft/view"] == codec.encode([5, False])
    restarted = Node(config, keys)  # the records are read from the ledger's store now
    assert restarted.pbft is not None and restarted.pbft.view == 5
    restarted.close()


def test_a_failed_flush_is_retried_before_any_later_write_reaches_disk(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store, db = _open(path)
    store.write({b"k1": b"a"})
    real_write = db.write

    def failing_write(batch: object) -> None:
        raise OSError("disk full")

    db.write = failing_write  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        store.flush()
    db.write = real_write  # type: ignore[method-assign]
    assert store.has_pending() and store.get(b"k1") == b"a"
    store.write({b"k2": b"b"})  # written after the failed flush
    store.close()  # the failed batch goes to disk with the later one, not skipped
    assert _durable(path) == {b"k1": b"a", b"k2": b"b"}
