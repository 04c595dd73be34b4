"""The LevelDB store opens stores written with other table options."""

from __future__ import annotations

from pathlib import Path

import plyvel

from ledger.store import LevelDBStore


def test_a_store_written_without_filters_or_cache_bounds_reads_back(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    old = plyvel.DB(path, create_if_missing=True)  # the library's defaults: no bloom filter
    for i in range(2_000):
        old.put(i.to_bytes(4, "big"), b"v%d" % i)
    old.close()
    store = LevelDBStore(path)
    try:
        assert store.get((7).to_bytes(4, "big")) == b"v7"
        assert store.get((5_000).to_bytes(4, "big")) is None
        store.write({(5_000).to_bytes(4, "big"): b"new", (7).to_bytes(4, "big"): None})
        assert len(list(store.iterate(b""))) == 2_000
    finally:
        store.close()
    reopened = LevelDBStore(path)
    try:
        assert reopened.get((5_000).to_bytes(4, "big")) == b"new"
        assert reopened.get((7).to_bytes(4, "big")) is None
    finally:
        reopened.close()
