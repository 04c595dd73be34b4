"""Proposal pool of a PBFT replica: verified transactions waiting for a block.

Transactions arrive in batches from every node's mempool (signatures are
verified once, before :meth:`ProposalPool.add`). The pool keeps arrival order,
is bounded, forgets transactions once committed, and tracks which ones the
local leader has already put in flight so it does not propose them twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class ProposalPool:
    """Bounded FIFO of verified raw transactions keyed by hash."""

    def __init__(self, max_txs: int, max_committed_remembered: int = 500_000) -> None:
        if max_txs <= 0:
            raise ValueError("pool bound must be positive")
        self.max_txs = max_txs
        self._txs: OrderedDict[bytes, bytes] = OrderedDict()
        self._in_flight: set[bytes] = set()
        self._committed: OrderedDict[bytes, None] = OrderedDict()
        self._max_committed = max_committed_remembered
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._txs)

    def is_known(self, tx_hash: bytes) -> bool:
        """Return True iff the hash is pooled or was committed recently."""
        return tx_hash in self._txs or tx_hash in self._committed

    def add(self, tx_hash: bytes, raw: bytes) -> bool:
        """Pool a verified transaction; False if known already or the pool is full."""
        if self.is_known(tx_hash):
            return False
        if len(self._txs) >= self.max_txs:
            self.dropped += 1
            return False
        self._txs[tx_hash] = raw
        return True

    def get_unproposed_count(self) -> int:
        """Return how many pooled transactions are not in flight."""
        return len(self._txs) - len(self._in_flight)

    def take_proposal(self, max_txs: int, max_bytes: int) -> list[bytes]:
        """Return up to ``max_txs`` raw transactions not in flight, marking them in flight."""
        out: list[bytes] = []
        size = 0
        for tx_hash, raw in self._txs.items():
            if len(out) >= max_txs:
                break
            if tx_hash in self._in_flight:
                continue
            if size + len(raw) + 5 > max_bytes:
                break
            self._in_flight.add(tx_hash)
            out.append(raw)
            size += len(raw) + 5
        return out

    def process_view_change(self, carried: Iterable[bytes] = ()) -> None:
        """Start a new view: only the pooled transactions in ``carried`` (those
        of the blocks the new view re-proposes) stay in flight; the rest may be
        proposed again, since a new view may not carry their proposals."""
        self._in_flight = {tx_hash for tx_hash in carried if tx_hash in self._txs}

    def process_committed(self, tx_hashes: list[bytes]) -> None:
        """Remove committed transactions and remember them for a while."""
        for tx_hash in tx_hashes:
            self._txs.pop(tx_hash, None)
            self._in_flight.discard(tx_hash)
            self._committed[tx_hash] = None
        while len(self._committed) > self._max_committed:
            self._committed.popitem(last=False)

