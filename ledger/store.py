"""Key-value storage behind a small interface with atomic write batches.

:class:`MemoryStore` serves tests; :class:`LevelDBStore` (plyvel) serves the
node. Both guarantee that :meth:`KVStore.write` applies a batch of puts and
deletes atomically: after a crash the store holds all of the batch or none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol


class KVStore(Protocol):
    """Minimal storage interface used by the ledger."""

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` or None."""
        ...

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` for every key starting with ``prefix``, in key order."""
        ...

    def write(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Apply ``batch`` atomically; a None value deletes the key."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class MemoryStore:
    """An in-memory store (a dict); atomic because a batch is applied in one call."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` or None."""
        return self._data.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield matching items in key order (a snapshot taken at call time)."""
        items = sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))
        yield from items

    def write(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Apply ``batch``."""
        for key, value in batch.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = bytes(value)

    def close(self) -> None:
        """Nothing to release."""


# LevelDB's native memory, bounded explicitly rather than by the library's
# defaults (an 8 MiB block cache, 1,000 open tables). The ledger keeps its hot
# records decoded in its own cache above the store, so a small block cache
# serves only the misses. Up to two write buffers exist while one is compacted.
BLOCK_CACHE_BYTES = 4 << 20
WRITE_BUFFER_BYTES = 4 << 20
MAX_OPEN_FILES = 256
# Ten bits per key give a ~1 % false-positive filter per table, so looking up
# a key that does not exist (an account that never held tokens, a receipt not
# yet written) almost never reads a data block.
BLOOM_FILTER_BITS = 10


class StoreClosedError(RuntimeError):
    """The store was used after :meth:`LevelDBStore.close`."""


class LevelDBStore:
    """A LevelDB store (plyvel). Batches use LevelDB's atomic write batches.

    Its native memory is bounded by the module's constants: the block cache,
    two write buffers and the index blocks of at most ``MAX_OPEN_FILES`` tables.
    """

    def __init__(self, path: str, *, sync: bool = True) -> None:
        import plyvel

        self._db: Any = plyvel.DB(
            path,
            create_if_missing=True,
            lru_cache_size=BLOCK_CACHE_BYTES,
            write_buffer_size=WRITE_BUFFER_BYTES,
            max_open_files=MAX_OPEN_FILES,
            bloom_filter_bits=BLOOM_FILTER_BITS,
        )
        self._sync = sync

    def _get_db(self) -> Any:
        if self._db is None:
            raise StoreClosedError("the LevelDB store is closed")
        return self._db

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` or None."""
        value = self._get_db().get(key)
        return None if value is None else bytes(value)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield matching items in key order from a consistent snapshot."""
        with self._get_db().snapshot() as snap, snap.iterator(prefix=prefix) as it:
            for key, value in it:
                yield bytes(key), bytes(value)

    def write(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Apply ``batch`` atomically (synced to disk when ``sync`` is set)."""
        with self._get_db().write_batch(transaction=True, sync=self._sync) as wb:
            for key, value in batch.items():
                if value is None:
                    wb.delete(key)
                else:
                    wb.put(key, value)

    def is_closed(self) -> bool:
        """Return True once :meth:`close` has run."""
        return self._db is None

    def close(self) -> None:
        """Close the database and drop the handle (idempotent); later use raises
        StoreClosedError. Dropping the handle frees it now: plyvel's finaliser
        fails when it first runs during interpreter shutdown, which is when an
        object still referenced at exit (a web framework's caches hold the
        node's routes) would otherwise release it."""
        db, self._db = self._db, None
        if db is not None:
            db.close()
