"""Status of transactions submitted to this node, and waiting for them.

A record goes pending -> confirmed | failed (when its block commits) ->
settled (when a PoS checkpoint at or above its height settles). Times are
wall-clock milliseconds at this node. The tracker is bounded twice: it keeps
at most ``max_settled`` settled records (the earliest settled are forgotten
first) and at most ``max_records`` records in all (the oldest first). A
forgotten transaction's outcome and height stay in its ledger receipt, which
the node's API answers from instead; only the times are lost.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any

import trio

from consensus.invariant import require

LEVELS = {"pending": 0, "confirmed": 1, "failed": 1, "settled": 2}

# About 0.3 KB per record: the default bound keeps the tracker near 30 MB.
DEFAULT_MAX_RECORDS = 100_000
# A settled record is final: a client that waited for it has its answer, and
# the receipt keeps the outcome. Keeping the last 4,096 (about 1.2 MB) lets a
# client that polls read each transaction's times for about 15 s after it
# settles at the paper's 4,750 tx/s spread over 18 nodes (264/s each), and
# bounds the tracker within minutes at any rate: with only the overall bound,
# 18.7 transactions a second per node (336 tx/s on the 18-node bench) took
# 90 minutes to fill it, growing the node by about 0.35 MB a minute.
DEFAULT_MAX_SETTLED = 4_096


class _Record:
    """One tracked transaction, compact: the status document is built on read."""

    __slots__ = (
        "block_hash",
        "confirmed_ms",
        "height",
        "reason",
        "settled_epoch",
        "settled_ms",
        "status",
        "submitted_ms",
    )

    def __init__(self, submitted_ms: int) -> None:
        self.status = "pending"
        self.submitted_ms = submitted_ms
        self.height = 0
        self.block_hash = ""
        self.confirmed_ms = 0
        self.reason = ""
        self.settled_ms = -1
        self.settled_epoch = 0

    def is_settled(self) -> bool:
        """Return True once a checkpoint covering the transaction settled."""
        return self.settled_ms >= 0

    def to_document(self, tx_hash: bytes) -> dict[str, Any]:
        """Return the status document served by the HTTP API (a new dict)."""
        doc: dict[str, Any] = {
            "hash": tx_hash.hex(),
            "status": self.status,
            "submitted_ms": self.submitted_ms,
        }
        if self.status != "pending":
            doc["height"] = self.height
            doc["block_hash"] = self.block_hash
            doc["confirmed_ms"] = self.confirmed_ms
            if self.status == "failed":
                doc["reason"] = self.reason
        if self.is_settled():
            doc["settled"] = True
            doc["settled_ms"] = self.settled_ms
            doc["settled_epoch"] = self.settled_epoch
        return doc


class TxTracker:
    """Bounded map of tx hash -> status, with async waiters."""

    def __init__(
        self,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_waiters: int = 50_000,
        max_settled: int = DEFAULT_MAX_SETTLED,
    ) -> None:
        require(max_records >= 1 and max_settled >= 1, "the tracker keeps at least one record")
        self.max_records = max_records
        self.max_waiters = max_waiters
        self.max_settled = max_settled
        self._records: OrderedDict[bytes, _Record] = OrderedDict()
        self._waiters: dict[bytes, trio.Event] = {}
        self._unsettled: deque[tuple[int, list[bytes]]] = deque()
        # hashes of settled records, earliest settled first (at most max_settled)
        self._settled: deque[bytes] = deque()
        self._settled_height = 0
        self._settled_epoch = 0

    def __len__(self) -> int:
        return len(self._records)

    def is_tracked(self, tx_hash: bytes) -> bool:
        """Return True iff the transaction is tracked here."""
        return tx_hash in self._records

    def get_commit_latency_ms(self, tx_hash: bytes) -> int | None:
        """Return submitted -> committed milliseconds, or None if not tracked or pending."""
        record = self._records.get(tx_hash)
        if record is None or record.status == "pending":
            return None
        return record.confirmed_ms - record.submitted_ms

    def get(self, tx_hash: bytes) -> dict[str, Any] | None:
        """Return the status document (a new dict), or None if not tracked."""
        record = self._records.get(tx_hash)
        return None if record is None else record.to_document(tx_hash)

    def process_submitted(self, tx_hash: bytes) -> None:
        """Record a newly admitted transaction as pending."""
        self._records[tx_hash] = _Record(int(time.time() * 1000))
        while len(self._records) > self.max_records:
            old, _ = self._records.popitem(last=False)
            self._wake(old)

    def process_block(
        self, height: int, block_hash: bytes, outcomes: list[tuple[bytes, bool, str]]
    ) -> None:
        """Mark tracked transactions of a committed block confirmed or failed."""
        now = int(time.time() * 1000)
        block_hex = block_hash.hex()  # one string shared by the block's records
        confirmed: list[bytes] = []
        for tx_hash, ok, reason in outcomes:
            record = self._records.get(tx_hash)
            if record is None or record.status != "pending":
                continue
            record.status = "confirmed" if ok else "failed"
            record.height = height
            record.block_hash = block_hex
            record.confirmed_ms = now
            if not ok:
                record.reason = reason
            confirmed.append(tx_hash)
            self._wake(tx_hash)
        if confirmed:
            self._unsettled.append((height, confirmed))
        if height <= self._settled_height:
            # the checkpoint settled before this node executed the block
            self.process_settled(self._settled_height, self._settled_epoch)

    def process_settled(self, height: int, checkpoint_epoch: int) -> None:
        """Mark every tracked transaction at or below ``height`` settled."""
        if height > self._settled_height:
            self._settled_height, self._settled_epoch = height, checkpoint_epoch
        now = int(time.time() * 1000)
        while self._unsettled and self._unsettled[0][0] <= height:
            _, hashes = self._unsettled.popleft()
            for tx_hash in hashes:
                record = self._records.get(tx_hash)
                if record is None:
                    continue
                record.settled_ms = now
                record.settled_epoch = checkpoint_epoch
                if record.status == "confirmed":
                    record.status = "settled"
                self._wake(tx_hash)
                self._settled.append(tx_hash)
        self._forget_settled()

    def _forget_settled(self) -> None:
        """Drop the earliest settled records beyond ``max_settled``."""
        while len(self._settled) > self.max_settled:
            tx_hash = self._settled.popleft()
            record = self._records.get(tx_hash)
            # a hash submitted again since and not settled yet is a new record: keep it
            if record is not None and record.is_settled():
                del self._records[tx_hash]

    def _wake(self, tx_hash: bytes) -> None:
        event = self._waiters.pop(tx_hash, None)
        if event is not None:
            event.set()

    async def wait(self, tx_hash: bytes, level: str, timeout: float) -> dict[str, Any] | None:
        """Wait until the record reaches ``level`` or ``timeout`` passes; return it."""
        want = LEVELS[level]
        with trio.move_on_after(timeout):
            while True:
                record = self._records.get(tx_hash)
                if record is None:
                    return None
                reached = LEVELS[record.status] >= want or record.is_settled()
                if record.status == "failed" or reached:
                    return record.to_document(tx_hash)
                if tx_hash not in self._waiters and len(self._waiters) >= self.max_waiters:
                    return record.to_document(tx_hash)
                event = self._waiters.setdefault(tx_hash, trio.Event())
                await event.wait()
        return self.get(tx_hash)
