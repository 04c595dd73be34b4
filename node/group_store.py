"""Group commit: the node's ledger batches and consensus records share one fsync.

A node makes two kinds of writes: the ledger's batch per executed block and
the consensus records its state machines persist (signed votes, prepared
proofs, progress). Consensus records must be durable before any frame that
depends on them leaves the node; the ledger batch must be durable no later
than the consensus records that say the block was executed. Writing each
block's ledger batch synced on the event loop, and the consensus records in
a second synced write, cost two fsyncs per block per node, one of them with
the whole node blocked.

:class:`GroupCommitStore` keeps both in one LevelDB store. ``write`` (the
:class:`ledger.store.KVStore` interface the ledger uses) only records the
batch as *pending*; reads see pending writes at once. ``flush`` makes
everything pending durable in ONE synced LevelDB batch, on the caller's
thread (the node's event loop, which waits for the disk). Because every flush
writes all that is pending as one atomic batch, the store on disk is always
the state at some flush point: a crash loses at most the writes made since
the last flush, the ledger and the consensus records together, never the
one without the other. A flush whose write fails keeps everything pending,
so the next flush writes it again together with what came later: the disk
never holds a later write without an earlier one.

Every method runs on the thread that owns the store.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from consensus.invariant import require
from ledger.store import LevelDBStore

# Pending bytes (keys and values written since the last flush) above which the
# node stops executing blocks until a flush catches up (``is_over_limit``).
# A flush normally follows every block, so this bounds a stalled disk.
DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024


class GroupCommitStore:
    """A LevelDB store whose writes become durable in group commits (see module doc)."""

    def __init__(
        self, store: LevelDBStore, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    ) -> None:
        require(max_pending_bytes > 0, "max_pending_bytes must be positive")
        self._store = store
        self._max_pending_bytes = max_pending_bytes
        # Every write not yet durable: key -> value, or None for a delete.
        self._pending: dict[bytes, bytes | None] = {}
        self._pending_bytes = 0

    # ------------------------------------------------------------ KVStore API

    def get(self, key: bytes) -> bytes | None:
        """Return the newest value of ``key``, pending or durable, or None."""
        if key in self._pending:
            return self._pending[key]
        return self._store.get(key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` under ``prefix`` in key order, pending writes included."""
        pending = sorted(
            (key, value) for key, value in self._pending.items() if key.startswith(prefix)
        )
        if not pending:
            yield from self._store.iterate(prefix)
            return
        i = 0
        for key, value in self._store.iterate(prefix):
            # Pending keys before this one first; a pending write of this key wins.
            while i < len(pending) and pending[i][0] <= key:
                pending_key, pending_value = pending[i]
                i += 1
                if pending_value is not None:
                    yield pending_key, pending_value
                if pending_key == key:
                    break
            else:
                yield key, value
        for pending_key, pending_value in pending[i:]:
            if pending_value is not None:
                yield pending_key, pending_value

    def write(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Record ``batch`` as pending: visible to reads now, durable at the next flush.

        Atomicity is kept: a flush writes whole batches, never part of one.
        """
        for key, value in batch.items():
            value = None if value is None else bytes(value)
            self._pending[key] = value
            self._pending_bytes += len(key) + (0 if value is None else len(value))

    def close(self) -> None:
        """Make everything pending durable, then close the LevelDB store (idempotent)."""
        if not self._store.is_closed():
            self.flush()
            self._store.close()

    def is_closed(self) -> bool:
        """Return True once :meth:`close` has run."""
        return self._store.is_closed()

    # ------------------------------------------------------------ group commit

    def has_pending(self) -> bool:
        """Return True iff some write is not yet durable."""
        return bool(self._pending)

    def is_over_limit(self) -> bool:
        """Return True iff the pending writes exceed the pending-bytes bound."""
        return self._pending_bytes > self._max_pending_bytes

    def get_pending_bytes(self) -> int:
        """Return the bytes (keys and values, overwrites counted again) written since
        the last successful flush."""
        return self._pending_bytes

    def flush(self) -> None:
        """Make every pending write durable in one synced LevelDB batch.

        On success nothing is pending; if the write raises, everything stays
        pending (and readable) for the next flush.
        """
        if not self._pending:
            return
        self._store.write(self._pending)
        self._pending = {}
        self._pending_bytes = 0


def migrate_consensus_dir(old: Path, store: GroupCommitStore, prefix: bytes) -> int:
    """Move the records of a separate consensus LevelDB into ``store`` under ``prefix``.

    Nodes used to keep their consensus records in ``data/consensus``; they now
    live in the ledger's store. Returns how many records moved (0 when there is
    no such directory). Safe to repeat after a crash at any point: the records
    are durable in ``store`` before the old directory is renamed away, and it is
    deleted only after the rename.
    """
    retired = old.with_name(old.name + ".migrated")
    moved = 0
    if old.is_dir():
        legacy = LevelDBStore(str(old))
        try:
            records: dict[bytes, bytes | None] = {prefix + k: v for k, v in legacy.iterate(b"")}
        finally:
            legacy.close()
        if records:
            store.write(records)
            store.flush()
        moved = len(records)
        if retired.exists():
            shutil.rmtree(retired)
        old.rename(retired)
    if retired.exists():
        shutil.rmtree(retired)
    return moved
